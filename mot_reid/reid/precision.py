"""Mixed precision and other per-device speed switches for ReID training, chosen from the recipe's
`runtime` section and the device, never by a fork of the training code.

- `runtime.amp`: auto = bf16 autocast on CUDA GPUs that support it (Ampere and later), fp16 with a
  GradScaler on older GPUs, off on CPU/MPS; `bf16` / `fp16` force a dtype; `off` disables autocast.
- The triplet and center losses compare feature distances; in half precision the expansion
  |x|^2 + |y|^2 - 2xy loses the small differences batch-hard mining depends on, so the training step
  computes the losses outside the autocast region and the losses upcast their inputs to fp32.
- `runtime.channels_last`: auto = on for CUDA (tensor cores want NHWC), off elsewhere.
- `runtime.compile`: wraps the model with `torch.compile` when true.
"""

from __future__ import annotations

import torch

from mot_reid.errors import UserError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def select_amp_dtype(amp: str, device_type: str, native_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype for a recipe's `runtime.amp` on a device type, or None for full fp32.

    `native_bf16` says whether the CUDA device has bf16 units (Ampere and later), which `auto` needs;
    an explicit `bf16` is honoured anywhere (emulated, slowly, where not native). An argument so the
    choice is testable without a GPU.
    """
    if amp not in AMP_CHOICES:
        raise UserError(f"runtime.amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "off":
        return None
    if amp == "auto":
        if device_type != "cuda":
            # CPU bf16 pays off only with native bf16 units (AVX512-BF16 / AMX: ResNet50 training 2.8x
            # faster in BENCHMARKS.md); without them it is emulated and slower, and torch has no public
            # query for them. Opt in with bf16.
            return None
        return torch.bfloat16 if native_bf16 else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """`select_amp_dtype` for an actual device. torch's bf16 check counts software emulation as support
    by default, which would put V100s and T4s on slow emulated bf16 instead of fp16: ask for native."""
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return select_amp_dtype(setting, device.type, native_bf16=native)


def select_channels_last(setting: str, device_type: str) -> bool:
    if setting not in ("auto", "on", "off"):
        raise UserError(f"runtime.channels_last must be auto, on or off, got {setting!r}")
    if setting == "auto":
        return device_type == "cuda"
    return setting == "on"


def make_grad_scaler(device_type: str, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 has fp32's exponent range and needs none).

    A disabled scaler passes `scale`, `step` and `update` straight through, so the training step
    is the same code in every precision.
    """
    return torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
