"""Appearance features for every detection: crop, resize, normalise and embed in one batch.

All boxes of a batch of frames are cut out with ONE `torchvision.ops.roi_align` call on the
frames' device (bilinear crop + resize to the model's input together, no per-box Python loop),
then normalised and run through the ReID model (bf16/fp16 autocast on CUDA). Features are
L2-normalised; for mot-reid checkpoints they are the pre-BN pooled vectors (`PreBN`).

Speed (measured on 2 CPU cores, see BENCHMARKS.md bench_pipeline): models run channels-last on
every device (oneDNN's depthwise and pooling kernels are ~1.5x faster in NHWC on CPU) and OSNet's
BatchNorms are folded into the convolutions; the frames are converted to float NCHW in one copy.

`--reid` choices: a mot-reid training checkpoint, a torchreid-format OSNet file, a `mot-reid export`
file (.onnx / OpenVINO .xml, run by `mot_reid.runtime`; `--backend` may also export a torch file), `none`
(motion only), or `auto`: the configured checkpoint (`embedder.auto_checkpoint` or the environment
variable `MOT_REID_CHECKPOINT`), else the fine-tuned BoT model shipped in assets/, else torchvision's
ImageNet ResNet50 pooled features (cached, or downloaded when the network answers), else motion only
with one warning line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.ops import roi_align

from mot_reid.errors import UserError
from mot_reid.log import logger
from mot_reid.reid.osnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    fuse_batchnorm,
    is_osnet_state_dict,
    osnet_from_state_dict,
)
from mot_reid.reid.precision import amp_dtype


class Embedder:
    """Callable: (frames uint8 (B,H,W,3) BGR tensor on the device, boxes per frame) -> features per frame."""

    def __init__(self, extract: Callable[[torch.Tensor], torch.Tensor], input_size: tuple[int, int],
                 device: str | torch.device, mean=IMAGENET_MEAN, std=IMAGENET_STD, info: dict | None = None,
                 max_crops: int = 256):
        self.extract = extract
        self.input_size = tuple(int(v) for v in input_size)
        self.device = torch.device(device)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)  # recorded by export
        mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.scale, self.shift = 1 / std, -mean / std  # (x - mean) / std as one multiply-add pass
        self.info = info or {}
        self.max_crops = max_crops  # bounds the memory of one forward pass
        self.dim: int | None = None
        # Half precision on CUDA (bf16 where supported), fp32 on CPU: the training recipe's `amp: auto`.
        self.autocast_dtype = amp_dtype("auto", self.device)

    def crops(self, frames: torch.Tensor, boxes: list[np.ndarray]) -> torch.Tensor:
        """(sum N_i, 3, h, w) normalised RGB channels-last crops of all boxes of every frame, in one roi_align call."""
        _, h, w, _ = frames.shape
        rois = []
        for b in boxes:
            t = torch.as_tensor(np.asarray(b, np.float32).reshape(-1, 4), device=self.device)
            # Clip to the frame, as torchreid-style preprocessing crops the clipped box: roi_align
            # would sample zeros outside it and darken the crop. Boxes are continuous pixel-edge
            # coordinates (pixel i spans [i, i+1)), so the frame spans [0, w] x [0, h].
            t[:, 0::2] = t[:, 0::2].clamp(0, w)
            t[:, 1::2] = t[:, 1::2].clamp(0, h)
            rois.append(t)
        # One copy straight to contiguous float (B, 3, H, W) (roi_align would copy a strided view again).
        # BGR -> RGB waits for the crops: flipping the full frames in that copy made it 2.2x slower on CPU
        # (113 vs 50 ms for 8 PETS09 frames), and the crops hold fewer pixels than the frames.
        images = frames.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        # aligned=True puts pixel centres at i + 0.5 like cv2/PIL resizing; sampling_ratio=0 takes
        # ceil(box/output) samples per output pixel: one bilinear sample when enlarging (a plain
        # bilinear resize) and an average when shrinking (the antialiasing PIL's resize does).
        crops = roi_align(images, rois, output_size=self.input_size, spatial_scale=1.0, sampling_ratio=0,
                          aligned=True)
        # Channel flip and normalisation after the crop touch only the small tensors; channels-last for the model.
        out = torch.empty_like(crops, memory_format=torch.channels_last)
        return torch.addcmul(self.shift, crops.flip(1), self.scale, out=out)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, boxes: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, self.dim or 0), np.float32) for _ in boxes]
        crops = self.crops(frames, boxes)  # channels-last already
        feats = []
        for chunk in crops.split(self.max_crops):
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                feats.append(self.extract(chunk).float())
        out = F.normalize(torch.cat(feats).flatten(1), dim=1).cpu().numpy().astype(np.float32)
        self.dim = out.shape[1]
        return list(np.split(out, np.cumsum(counts)[:-1]))


def _prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    # channels-last on CPU too: 1.5x faster OSNet forward with oneDNN on 2 cores (same features).
    return model.to(device).eval().to(memory_format=torch.channels_last)


def osnet_embedder(state: dict, device, path: str = "", feature: str = "before") -> Embedder:
    if feature != "before":
        raise UserError(f"embedder.feature={feature} needs a mot-reid checkpoint with a BNNeck; {path} is a "
                        "torchreid OSNet file with a single feature")
    model, variant = osnet_from_state_dict(state)
    model = _prepare(fuse_batchnorm(model.eval()), torch.device(device))
    return Embedder(model, (256, 128), device, info={"kind": "osnet", "variant": variant, "weights": path,
                                                    "feature": "fc embedding (512-D)"})


class CheckpointFeature(torch.nn.Module):
    """A ReIDModel's tracking feature as a module of its own (what the tracker uses, and what exports):
    pre-BN (centred by the BNNeck's running mean, see `ReIDModel.extract`) or post-BN."""

    def __init__(self, model: torch.nn.Module, feature: str = "before"):
        super().__init__()
        self.model, self.feature = model, feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract(x, feat=self.feature)


def checkpoint_embedder(ckpt: dict, device, path: str = "", feature: str = "before") -> Embedder:
    """A `mot-reid train` checkpoint: pre-BN features (or post-BN with `feature="after"`), the recipe's
    input size and normalisation."""
    from mot_reid.reid.model import model_from_checkpoint

    model, recipe = model_from_checkpoint(ckpt, path, device)
    model = _prepare(CheckpointFeature(model, feature), torch.device(device))
    label = {"before": "before (pre-BN)", "after": "after (post-BN)"}[feature]
    return Embedder(model, recipe.input.size, device, recipe.input.mean,
                    recipe.input.std, info={"kind": "mot-reid", "weights": str(path), "feature": label,
                                            "backbone": getattr(recipe.model, "backbone", None)})


def torchvision_embedder(device, weights: str | None = "IMAGENET1K_V1", arch: str = "resnet50") -> Embedder:
    """torchvision ResNet pooled features (fc removed); `weights=None` gives random weights (benchmarks)."""
    import torchvision

    model = getattr(torchvision.models, arch)(weights=weights)
    model.fc = torch.nn.Identity()
    model = _prepare(model, torch.device(device))
    return Embedder(model, (256, 128), device, info={"kind": "torchvision", "arch": arch,
                                                    "weights": weights or "random", "feature": "pooled"})


def _torchvision_cached(arch: str = "resnet50") -> bool:
    import torchvision

    url = torchvision.models.get_weight(f"{arch.capitalize().replace('net', 'Net')}_Weights.IMAGENET1K_V1").url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def load_path(path: str, device, feature: str = "before") -> Embedder:
    if not Path(path).is_file():
        raise UserError(f"ReID weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - empty, truncated, or a pickled object such as a YOLO model
        # torch's own message is a multi-line weights_only explanation; one line that names the formats helps more.
        raise UserError(f"cannot read ReID weights {path}: damaged, or not a ReID checkpoint (a pickled model such "
                        "as YOLO weights); --reid accepts a `mot-reid train` checkpoint (.pt) or a torchreid OSNet "
                        "state dict (.pth)") from None
    if isinstance(state, dict) and is_osnet_state_dict(state):
        return osnet_embedder(state, device, str(path), feature)
    return checkpoint_embedder(state, device, str(path), feature)


def load_with_backend(path: str, device, backend: str = "auto", feature: str = "before") -> Embedder:
    """A ReID file on `backend`: exported files run on their runtime; a torch file with an exported backend
    is exported once into the cache (`mot_reid.export.cached_reid_export`) and run from there."""
    from mot_reid import runtime

    exported = runtime.file_format(path) != "torch"
    if feature != "before" and (exported or backend not in ("auto", "torch")):
        raise UserError(f"embedder.feature={feature} runs on --backend torch only (exports hold the pre-BN feature)")
    if exported:
        return runtime.exported_embedder(path, backend, torch.device(device))
    if backend in ("auto", "torch"):
        return load_path(path, device, feature)
    if not Path(path).is_file():
        raise UserError(f"ReID weights not found: {path}")
    from mot_reid.export import cached_reid_export

    return runtime.exported_embedder(cached_reid_export(path, backend), backend, torch.device(device))


# The offline default: a BoT OSNet x0.25 fine-tuned by `mot-reid train` on MOT17-mini + TUD-Campus
# crops (assets/reid_osnet_x0_25_botft.md says how, and what it scores on PETS09-S2L1, which it never saw).
SHIPPED_REID = "reid_osnet_x0_25_botft.pt"


def shipped_checkpoint() -> Path | None:
    """The checkpoint in assets/ (a checkout or editable install) or package data `mot_reid.assets` (a wheel)."""
    from importlib import resources

    source_tree = Path(__file__).resolve().parents[1] / "assets" / SHIPPED_REID
    if source_tree.is_file():
        return source_tree
    try:
        packaged = Path(str(resources.files("mot_reid.assets"))) / SHIPPED_REID
    except ModuleNotFoundError:
        return None
    return packaged if packaged.is_file() else None


def build_embedder(spec: str, device, auto_checkpoint: str | None = None, is_online=None,
                   backend: str = "auto", feature: str = "before") -> Embedder | None:
    """Resolve `--reid`; None means motion-only tracking.

    `auto`, in order: the configured checkpoint, the shipped fine-tuned BoT model, torchvision's
    ImageNet ResNet50 (cached or downloadable), motion only. The shipped person-ReID model comes before
    the ImageNet classifier: the README (`--reid`, under "Track people") says why."""
    if spec == "none":
        return None
    if spec != "auto":
        return load_with_backend(spec, device, backend, feature)
    configured = auto_checkpoint or os.environ.get("MOT_REID_CHECKPOINT")
    if configured:
        if not Path(configured).is_file():
            raise UserError(f"configured ReID checkpoint not found: {configured}")
        return load_with_backend(configured, device, backend, feature)
    shipped = shipped_checkpoint()
    if shipped is not None:
        logger.info("reid: no checkpoint configured; using the shipped fine-tuned model %s", shipped.name)
        return load_with_backend(str(shipped), device, backend, feature)
    if backend not in ("auto", "torch"):
        logger.warning("reid: --backend %s applies to ReID weights files; torchvision's ResNet50 runs on torch",
                       backend)
    if is_online is None:
        from mot_reid.detection import online as is_online
    if _torchvision_cached() or is_online(host="download.pytorch.org"):
        logger.info("reid: no project checkpoint configured; using torchvision ImageNet ResNet50 features")
        try:
            return torchvision_embedder(device)
        except Exception as exc:  # noqa: BLE001 - a failed download falls back like offline
            logger.warning("reid: ResNet50 download failed (%s)", str(exc).splitlines()[0] if str(exc) else exc)
    logger.warning("reid: no ReID checkpoint configured and no ImageNet ResNet50 available offline; "
                   "tracking by motion only")
    return None
