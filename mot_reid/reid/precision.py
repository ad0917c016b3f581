"""Mixed precision and other per-device speed switches for ReID training, chosen from the recipe's
`runtime` section and the device, never by a fork of the training code.

- `runtime.amp`: auto = bf16 autocast on CUDA GPUs that support it (Ampere and later), fp16 with a
  GradScaler on older GPUs, off on CPU/MPS; `bf16` / `fp16` force a dtype; `off` disables autocast.
- The triplet and center losses compare feature distances; in half precision the expansion
  |x|^2 + |y|^2 - 2xy loses the small differences batch-hard mining depends on, so `run_in_fp32`
  runs them with autocast off and floating inputs upcast.
- `runtime.channels_last`: auto = on for CUDA (tensor cores want NHWC), off elsewhere.
- `runtime.compile`: wraps the model with `torch.compile` when true.

Typical step (both optimizers of the recipe go through the same scaler):

    prec = Precision.from_recipe(recipe.runtime, device)
    model = prec.prepare_model(model)
    with prec.autocast():
        logits, feat = model(prec.prepare_input(images))
    loss, parts = run_in_fp32(criterion, logits, feat, pids)
    prec.backward_and_step(loss, [optimizer, center_optimizer], before_step=rescale_center_grads)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from mot_reid.errors import UserError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def select_amp_dtype(amp: str, device_type: str, bf16_supported: bool = False) -> torch.dtype | None:
    """The autocast dtype for a recipe's `runtime.amp` on a device type, or None for full fp32.

    `bf16_supported` says whether the CUDA device has native bf16 (`torch.cuda.is_bf16_supported()`);
    it is an argument so the choice is testable without a GPU.
    """
    if amp not in AMP_CHOICES:
        raise UserError(f"runtime.amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "off":
        return None
    if amp == "auto":
        if device_type != "cuda":
            return None  # CPU autocast is slower than fp32 for convolutions on most CPUs
        return torch.bfloat16 if bf16_supported else torch.float16
    if amp == "bf16":
        if device_type == "cuda" and not bf16_supported:
            raise UserError("runtime.amp=bf16 but this GPU has no bf16 support; use fp16 or auto")
        return torch.bfloat16
    return torch.float16


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """`select_amp_dtype` for an actual device (asks CUDA whether it has bf16)."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return select_amp_dtype(setting, device.type, bf16_supported=bf16)


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


def _to_fp32(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


def run_in_fp32(fn: Callable, *args, **kwargs):
    """Call `fn` with autocast disabled on every device and floating tensor arguments upcast to fp32.

    Use it for distance-based losses (batch-hard triplet, center loss): inside an autocast region
    even fp32 inputs to `x @ y.t()` would otherwise run in half precision.
    """
    args = tuple(_to_fp32(a) for a in args)
    kwargs = {k: _to_fp32(v) for k, v in kwargs.items()}
    with _autocast_disabled(args, kwargs):
        return fn(*args, **kwargs)


def in_fp32(fn: Callable) -> Callable:
    """Decorator form of `run_in_fp32`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_in_fp32(fn, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _autocast_disabled(args, kwargs) -> Iterator[None]:
    device_types = {"cpu"}
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            device_types.add(value.device.type)
    with contextlib.ExitStack() as stack:
        for device_type in sorted(device_types):
            if device_type in ("cpu", "cuda", "mps", "xpu"):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


@dataclass
class Precision:
    """Everything precision- and layout-related for one training run on one device."""

    device: torch.device
    dtype: torch.dtype | None = None  # autocast dtype; None = fp32
    channels_last: bool = False
    compile: bool = False
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self):
        self.device = torch.device(self.device)
        self.scaler = make_grad_scaler(self.device.type, self.dtype)

    @classmethod
    def from_recipe(cls, runtime, device: str | torch.device) -> Precision:
        """From a `RuntimeConfig` (fields amp, channels_last, compile) and the training device."""
        device = torch.device(device)
        return cls(device=device, dtype=amp_dtype(runtime.amp, device),
                   channels_last=select_channels_last(runtime.channels_last, device.type),
                   compile=bool(runtime.compile))

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        """The forward pass's autocast region (a no-op context in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """channels_last, then `torch.compile` if asked: for a single process. Under DDP use
        `to_memory_format` -> `distributed.prepare_model` -> `maybe_compile`, since DDP must see the
        final parameter layout and SyncBatchNorm conversion must precede compilation."""
        return self.maybe_compile(self.to_memory_format(model))

    def to_memory_format(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def maybe_compile(self, model: nn.Module) -> nn.Module:
        return torch.compile(model) if self.compile else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward_and_step(self, loss: torch.Tensor, optimizers: Iterable[torch.optim.Optimizer],
                          before_step: Callable[[], None] | None = None) -> None:
        """Backward through the scaler, unscale every optimizer's gradients, run `before_step` (e.g.
        the center loss's 1/weight gradient rescale, which must see true gradients), step, update.

        With fp16 a step whose gradients hold inf/nan is skipped by the scaler for every optimizer.
        """
        optimizers = list(optimizers)
        self.scaler.scale(loss).backward()
        for opt in optimizers:
            self.scaler.unscale_(opt)
        if before_step is not None:
            before_step()
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        """The scaler's state (its current scale) for an exact resume; empty when it is disabled."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
