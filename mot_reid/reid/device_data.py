"""The GPU-scale training data path: decode once, augment whole batches on the training device.

The per-image CPU path (`transforms.build_train_transform` in DataLoader workers) decodes every
JPEG every epoch; at thousands of images/s that needs more CPU cores than a GPU host has. Here:

1. `ImageCache.build` decodes the training images ONCE, resized exactly as the CPU path resizes
   them (PIL bilinear with antialias, through the same torchvision v2 `Resize`), into one uint8
   tensor N x 3 x H x W (Market-1501 at 256x128: 12936 x 98 KB = 1.3 GB). It is kept on the
   training device when it fits comfortably in free device memory, else in host memory (pinned when
   training on CUDA) and copied per batch asynchronously.
2. `BatchAugment` applies the CPU path's chain to a whole uint8 batch in a few tensor ops:
   horizontal flip (p) -> zero pad + random crop -> /255 and ImageNet normalise -> random erasing
   (torchvision's algorithm as the CPU path configures it: area in `erasing_area`, log-uniform
   aspect in [a, 1/a], 10 tries to fit, uniform placement, erased with 0 in the normalised image).
   Given the same parameters the result equals the CPU path's; the parameters are drawn with the
   same distribution (tests/test_device_data.py checks both).
3. `DeviceTrainData` ties a batch sampler (the PK sampler) to the two: each batch of indices ->
   augmented float batch and labels on the device.

Randomness: every draw comes from a CPU `torch.Generator` (a few numbers per image, moved to the
device), so results do not depend on the device, and it is reseeded from (seed, rank, epoch) at
`set_epoch`: a resume needs no saved generator states, and on the same number of ranks it replays
the same augmentations (at an epoch boundary or, via the sampler's position, mid-epoch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mot_reid.log import logger, progress
from mot_reid.reid.datasets import open_image
from mot_reid.reid.recipe import InputConfig

ERASE_ATTEMPTS = 10  # torchvision's RandomErasing tries 10 boxes, then leaves the image as is
ERASE_VALUE = 0.0  # what transforms.py erases with: 0 in the normalised image (the ImageNet mean colour)
# Keep the cache on the device only while it takes at most this share of the free device memory;
# the rest is for the model, activations and the optimizer.
DEVICE_SHARE = 0.5
DEVICE_CHUNK = 1024  # images decoded into host memory at a time when the cache goes to the device
PLACEMENTS = ("auto", "device", "host")


def _decode_resized(path: str, size: tuple[int, int]) -> torch.Tensor:
    """uint8 3 x H x W, resized exactly as the CPU training path resizes (PIL bilinear + antialias)."""
    image = open_image(path)  # UserError naming the file when it does not decode
    image = F.resize(image, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    return F.pil_to_tensor(image)


class ImageCache:
    """The decoded, resized training images as one uint8 tensor N x 3 x H x W."""

    def __init__(self, images: torch.Tensor, device: torch.device):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a uint8 N x 3 x H x W tensor, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.device = torch.device(device)  # the training device (where batches are delivered)

    @property
    def on_device(self) -> bool:
        """True when batches need no host-to-device copy (cache on the device, or CPU training)."""
        return self.images.device.type != "cpu" or self.device.type == "cpu"

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    @classmethod
    def build(cls, paths: Sequence[str], size: tuple[int, int], device: str | torch.device = "cpu",
              placement: str = "auto", workers: int | None = None) -> ImageCache:
        """Decode `paths` once (threads: PIL releases the GIL while decoding and resizing).

        placement: device = on the training device, host = host memory (pinned when training on CUDA),
        auto = the device if the cache fits in `DEVICE_SHARE` of its free memory, else host.
        """
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        device = torch.device(device)
        height, width = size
        n = len(paths)
        on_device = _keep_on_device(n * 3 * height * width, device, placement)
        # Pinned only when the cache stays in host memory for a GPU: a pinned staging copy of a cache
        # headed for the device would stay in torch's pinned-block cache for the whole run.
        pin = not on_device and device.type == "cuda"
        images = torch.empty((n, 3, height, width), dtype=torch.uint8, pin_memory=pin,
                             device=device if on_device else "cpu")
        # Headed for the device: decode chunk by chunk into a small host buffer and copy each over.
        chunk = DEVICE_CHUNK if on_device else max(n, 1)
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                progress(total=n, desc="decoding images", unit="img") as bar:
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                target = torch.empty((stop - start, 3, height, width), dtype=torch.uint8) if on_device \
                    else images[start:stop]

                def load(i: int, target=target, start=start) -> None:
                    target[i - start] = _decode_resized(paths[i], size)

                # list() re-raises the first decode failure (a UserError naming the file) here.
                for _ in pool.map(load, range(start, stop)):
                    bar.update()
                if on_device:
                    images[start:stop].copy_(target)
        where = "device" if on_device else ("pinned host" if pin else "host")
        logger.info("image cache: %d images at %dx%d, %.2f GB in %s memory", n, height, width,
                    images.numel() / 1e9, where)
        return cls(images, device)

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """The uint8 images at `indices` (int64; pass them where the cache is to save a copy), on the
        training device."""
        if self.on_device:
            return self.images.index_select(0, indices.to(self.images.device))
        if self.images.is_pinned():
            # Gather into pinned memory so the copy is asynchronous; the caching host allocator keeps
            # the buffer alive until the copy has finished.
            batch = torch.empty((len(indices), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
            torch.index_select(self.images, 0, indices.cpu(), out=batch)
            return batch.to(self.device, non_blocking=True)
        return self.images.index_select(0, indices.cpu()).to(self.device)


def _keep_on_device(nbytes: int, device: torch.device, placement: str) -> bool:
    if device.type == "cpu" or placement == "host":
        return False
    if placement == "device":
        return True
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return nbytes <= DEVICE_SHARE * free
    return False  # other accelerators: no portable free-memory query; keep it on the host


@dataclass
class AugmentParams:
    """Per-image random parameters of one batch (CPU tensors of length B)."""

    flip: torch.Tensor  # bool
    crop_y: torch.Tensor  # int64 in [0, 2 * padding]: top of the crop in the padded image
    crop_x: torch.Tensor  # int64 in [0, 2 * padding]
    erase: torch.Tensor  # bool: this image gets an erased box
    erase_top: torch.Tensor  # int64
    erase_left: torch.Tensor  # int64
    erase_h: torch.Tensor  # int64
    erase_w: torch.Tensor  # int64

    def packed(self) -> torch.Tensor:
        """All fields as rows of one int64 tensor (one host-to-device copy instead of eight)."""
        return torch.stack([getattr(self, f.name).long() for f in fields(self)])

    @classmethod
    def unpack(cls, rows: torch.Tensor) -> AugmentParams:
        values = dict(zip([f.name for f in fields(cls)], rows.unbind(0), strict=True))
        return cls(**{**values, "flip": values["flip"].bool(), "erase": values["erase"].bool()})


class BatchAugment:
    """The training augmentation of `transforms.build_train_transform`, for whole batches on a device."""

    def __init__(self, cfg: InputConfig, device: str | torch.device = "cpu", channels_last: bool = False):
        self.cfg = cfg
        self.size = tuple(cfg.size)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def draw(self, batch: int, generator: torch.Generator) -> AugmentParams:
        """Draw the random parameters of `batch` images from a CPU generator."""
        cfg, (height, width) = self.cfg, self.size
        g = generator
        flip = torch.rand(batch, generator=g) < cfg.flip_p
        span = 2 * cfg.padding + 1
        crop_y = torch.randint(0, span, (batch,), generator=g)
        crop_x = torch.randint(0, span, (batch,), generator=g)

        erase = torch.rand(batch, generator=g) < cfg.erasing_p
        a_lo, a_hi = cfg.erasing_area
        aspect = cfg.erasing_min_aspect
        log_lo, log_hi = math.log(aspect), math.log(1.0 / aspect)
        # All 10 tries at once, in float64 like torchvision's Python arithmetic; the first box that
        # fits (strictly smaller than the image on both sides) is used.
        area = height * width * (a_lo + (a_hi - a_lo) * torch.rand(batch, ERASE_ATTEMPTS, generator=g,
                                                                   dtype=torch.float64))
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(batch, ERASE_ATTEMPTS, generator=g,
                                                                   dtype=torch.float64))
        box_h = torch.round(torch.sqrt(area * ratio)).long()  # round half to even, like Python's round
        box_w = torch.round(torch.sqrt(area / ratio)).long()
        fits = (box_h < height) & (box_w < width)
        first = fits.long().argmax(dim=1, keepdim=True)
        erase &= fits.any(dim=1)
        box_h = box_h.gather(1, first).squeeze(1)
        box_w = box_w.gather(1, first).squeeze(1)
        # Uniform over the positions where the box fits: floor(u * count) for count = H - h + 1.
        top = (torch.rand(batch, generator=g, dtype=torch.float64) * (height - box_h + 1)).long()
        left = (torch.rand(batch, generator=g, dtype=torch.float64) * (width - box_w + 1)).long()
        top = torch.minimum(top, height - box_h)  # guards the u -> 1 edge of float rounding
        left = torch.minimum(left, width - box_w)
        if cfg.erasing_p <= 0:
            erase[:] = False
        return AugmentParams(flip, crop_y, crop_x, erase, top, left, box_h, box_w)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """uint8 B x 3 x H x W (on the device, at the recipe size) -> normalised float32 batch."""
        if images.dtype != torch.uint8 or tuple(images.shape[2:]) != self.size:
            raise ValueError(f"expected uint8 images of size {self.size}, got {images.dtype} {tuple(images.shape)}")
        device = images.device
        batch = images.shape[0]
        height, width = self.size
        pad = self.cfg.padding
        p = {k: v.to(device) for k, v in vars(params).items()}  # no-ops when drawn for `DeviceTrainData`

        # Flip, pad and crop as two gathers (rows, then columns): output pixel (r, c) reads padded
        # pixel (r + crop_y, c + crop_x), mirrored as (W + 2 pad - 1 - that) for flipped images (the
        # padded image of a flipped image is the flipped padded image, since padding is symmetric).
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
        rows = p["crop_y"][:, None] + torch.arange(height, device=device)[None, :]
        cols = p["crop_x"][:, None] + torch.arange(width, device=device)[None, :]
        cols = torch.where(p["flip"][:, None], (width + 2 * pad - 1) - cols, cols)
        out = padded.gather(2, rows[:, None, :, None].expand(batch, 3, height, padded.shape[3]))
        out = out.gather(3, cols[:, None, None, :].expand(batch, 3, height, width))

        out = out.float().div_(255.0).sub_(self.mean).div_(self.std)  # ToDtype(scale=True) + Normalize

        r = torch.arange(height, device=device)[None, :]
        c = torch.arange(width, device=device)[None, :]
        in_rows = (r >= p["erase_top"][:, None]) & (r < (p["erase_top"] + p["erase_h"])[:, None])
        in_rows &= p["erase"][:, None]
        in_cols = (c >= p["erase_left"][:, None]) & (c < (p["erase_left"] + p["erase_w"])[:, None])
        out.masked_fill_(in_rows[:, None, :, None] & in_cols[:, None, None, :], ERASE_VALUE)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return out.contiguous(memory_format=memory_format)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(images.shape[0], generator))


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one rank's augmentations in one epoch."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class DeviceTrainData:
    """Batches of augmented images on the device, in the order a batch sampler (the PK sampler) gives.

    The same seam as `train.TrainData`: iterating yields `(images, pids)` (normalised float32 images
    and int64 pids, both on the training device); `__len__`, `set_epoch`, `state_dict`,
    `load_state_dict`.
    """

    def __init__(self, cache: ImageCache, pids: Sequence[int], batch_sampler, augment: BatchAugment,
                 seed: int = 0, rank: int = 0):
        if len(pids) != len(cache):
            raise ValueError(f"{len(cache)} cached images but {len(pids)} pids")
        self.cache, self.augment, self.sampler = cache, augment, batch_sampler
        self.pids = torch.as_tensor(list(pids), dtype=torch.int64)  # on the CPU, indexed with the sampler's indices
        self.seed, self.rank = seed, rank
        self.generator = torch.Generator()
        self.set_epoch(0)

    @classmethod
    def from_recipe(cls, items: Sequence[tuple[str, int, int]], recipe, device: str | torch.device,
                    rank: int = 0, world_size: int = 1, placement: str = "auto",
                    channels_last: bool = False) -> DeviceTrainData:
        """From a dataset's `(path, pid, camid)` training items and a `ReIDRecipe`. Under DDP each rank
        gets `data.ids_per_batch / world_size` whole identities of every global PK batch."""
        from mot_reid.reid.distributed import rank_pk_sampler

        pids = [pid for _, pid, _ in items]
        sampler = rank_pk_sampler(pids, recipe.data.ids_per_batch, recipe.data.images_per_id,
                                  seed=recipe.solver.seed, rank=rank, world_size=world_size,
                                  mode=recipe.data.sampler)
        cache = ImageCache.build([path for path, _, _ in items], tuple(recipe.input.size), device, placement)
        augment = BatchAugment(recipe.input, device, channels_last=channels_last)
        return cls(cache, pids, sampler, augment, seed=recipe.solver.seed, rank=rank)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentations for `epoch` and pass the epoch on to the sampler."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.seed, self.rank, epoch))
        # A sampler resumed mid-epoch continues where it stopped: move the generator past the batches
        # already trained on (PK batches all have one size, and a draw's randomness does not vary).
        for _ in range(getattr(self.sampler, "position", 0)):
            self.augment.draw(self.sampler.P * self.sampler.K, self.generator)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.cache.device
        cache_on_cpu = self.cache.images.device.type == "cpu"
        for batch in self.sampler:
            indices = torch.as_tensor(list(batch), dtype=torch.int64)
            params = self.augment.draw(len(indices), self.generator)
            # Labels, indices and augmentation parameters go over in ONE copy from pinned memory, so
            # the host queues the next batch without waiting for the GPU (a copy from pageable memory,
            # or eight small ones, would synchronise every step).
            host = torch.cat([self.pids[indices][None], indices[None], params.packed()])
            if device.type == "cuda":
                host = host.pin_memory()
            moved = host.to(device, non_blocking=True)
            images = self.cache.gather(indices if cache_on_cpu else moved[1])
            yield self.augment.apply(images, AugmentParams.unpack(moved[2:])), moved[0]

    def state_dict(self) -> dict:
        state = self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else {}
        return {**state, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        if hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)
        self.set_epoch(int(state["epoch"]))
