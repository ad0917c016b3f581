"""Per-image ReID transforms (CPU data path), built from torchvision transforms v2.

Train: resize -> horizontal flip -> pad + random crop -> float + ImageNet normalise -> random erasing.
Test: resize -> float + normalise. Both take a PIL image and return a plain CHW float tensor.

Random erasing is torchvision's `v2.RandomErasing(p, scale=area, ratio=(a, 1/a), value=0)`. It differs
from the Bag-of-Tricks copy of Zhong et al.'s code in three small, deliberate ways:
- erased value: 0 in the normalised tensor, i.e. the ImageNet mean colour (the "mean pixel" fill of
  the random-erasing paper). The reference writes the CIFAR-10 pixel means (0.4914, 0.4822, 0.4465)
  straight into the *normalised* tensor, a slightly lighter grey that only arose from reusing CIFAR code;
- aspect ratio: log-uniform on [a, 1/a] (tall and wide boxes equally likely) where the reference draws
  it uniformly (about 77% tall boxes for a = 0.3);
- attempts: 10 tries to fit a box inside the image, then no erasing (the reference tries 100). For
  256x128 input, area 0.02-0.4 and a = 0.3 one try fails with probability ~0.16, so ~1e-8 of the
  images drawn for erasing stay unerased: the effective rate is p.
Area range, minimum aspect, probability and box placement (uniform over positions where it fits)
are the reference's.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from mot_reid.reid.recipe import InputConfig


def _to_normalised_tensor(cfg: InputConfig) -> list:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
    ]


def build_train_transform(cfg: InputConfig) -> v2.Compose:
    size = list(cfg.size)
    steps = [v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)]
    if cfg.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=cfg.flip_p))
    if cfg.padding > 0:
        # Zero padding then a crop back to the input size: a random translation of up to `padding` px.
        steps += [v2.Pad(cfg.padding, fill=0, padding_mode="constant"), v2.RandomCrop(size)]
    steps += _to_normalised_tensor(cfg)
    if cfg.erasing_p > 0:
        aspect = cfg.erasing_min_aspect
        steps.append(v2.RandomErasing(p=cfg.erasing_p, scale=tuple(cfg.erasing_area), ratio=(aspect, 1.0 / aspect),
                                      value=0.0))
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)


def build_test_transform(cfg: InputConfig) -> v2.Compose:
    return v2.Compose([
        v2.Resize(list(cfg.size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        *_to_normalised_tensor(cfg),
        v2.ToPureTensor(),
    ])
