"""Train/test transforms: shape, normalisation, and flip/erasing at the configured rates (seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mot_reid.reid.recipe import InputConfig
from mot_reid.reid.transforms import build_test_transform, build_train_transform

MEAN = torch.tensor(InputConfig().mean).view(3, 1, 1)
STD = torch.tensor(InputConfig().std).view(3, 1, 1)


def noise_image(h=64, w=32, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(1, 255, (h, w, 3), dtype=np.uint8))


def test_test_transform_shape_and_imagenet_normalisation():
    cfg = InputConfig()
    out = build_test_transform(cfg)(Image.new("RGB", (50, 120), (255, 128, 0)))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 256, 128)
    expected = (torch.tensor([1.0, 128 / 255, 0.0]).view(3, 1, 1) - MEAN) / STD
    assert torch.allclose(out, expected.expand_as(out), atol=1e-5)


def test_train_transform_shape_and_type():
    torch.manual_seed(0)
    out = build_train_transform(InputConfig())(noise_image(100, 40))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 256, 128)


def rates(cfg: InputConfig, n: int, seed: int):
    """Fractions of train outputs that are flipped / erased, told apart from the test output."""
    torch.manual_seed(seed)
    image = noise_image(cfg.size[0], cfg.size[1])  # already at size: resize is the identity
    plain = build_test_transform(cfg)(image)
    mirrored = plain.flip(-1)
    train = build_train_transform(cfg)
    flipped = erased = 0
    boxes = []
    for _ in range(n):
        out = train(image)
        changed = (out != plain) & (out != mirrored)
        flipped += int((out == mirrored).float().mean() > (out == plain).float().mean())
        if changed.any():
            erased += 1
            ys, xs = torch.nonzero(changed.any(0), as_tuple=True)
            h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
            boxes.append((h, w, int(changed.any(0).sum()), out[:, changed.any(0)]))
    return flipped / n, erased / n, boxes


def test_flip_happens_at_configured_rate():
    n = 600
    flip, erase, _ = rates(InputConfig(size=(64, 32), padding=0, erasing_p=0.0, flip_p=0.5), n, seed=1)
    assert erase == 0
    assert abs(flip - 0.5) < 4 * math.sqrt(0.25 / n)
    flip, _, _ = rates(InputConfig(size=(64, 32), padding=0, erasing_p=0.0, flip_p=0.2), n, seed=2)
    assert abs(flip - 0.2) < 4 * math.sqrt(0.16 / n)


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_random_erasing_rate_area_aspect_and_value(p):
    n = 500
    cfg = InputConfig(size=(64, 32), padding=0, flip_p=0.0, erasing_p=p)
    _, erase, boxes = rates(cfg, n, seed=3)
    assert abs(erase - p) < 4 * math.sqrt(p * (1 - p) / n)
    area = 64 * 32
    for h, w, count, values in boxes:
        assert count == h * w  # one solid rectangle
        assert 0.02 * area * 0.8 <= h * w <= 0.4 * area * 1.2  # rounding of h and w
        assert 0.3 * 0.7 <= h / w <= (1 / 0.3) * 1.4
        assert torch.all(values == 0)  # 0 in normalised space = the ImageNet mean colour


def test_padding_translates_content():
    cfg = InputConfig(size=(64, 32), padding=10, flip_p=0.0, erasing_p=0.0)
    torch.manual_seed(0)
    image = noise_image(64, 32)
    plain = build_test_transform(cfg)(image)
    outs = [build_train_transform(cfg)(image) for _ in range(20)]
    assert any(not torch.equal(o, plain) for o in outs)
    zero_pixel = ((torch.zeros(3, 1, 1) - MEAN) / STD).squeeze()
    # Every output holds either original pixels or the zero padding, shifted by at most 10 px.
    for out in outs:
        pad = torch.isclose(out, zero_pixel.view(3, 1, 1)).all(0)
        rows = pad.all(1).sum() + 0
        cols = pad.all(0).sum() + 0
        assert rows <= 10 and cols <= 10
