"""The one place a device name from the command line or a config becomes a torch.device."""

from __future__ import annotations

import torch

from mot_reid.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`; an impossible choice is a UserError.

    `auto` gives the current CUDA device without an index, so a torchrun process that has called
    `torch.cuda.set_device(LOCAL_RANK)` lands on its own GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} requested but CUDA is not available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device
