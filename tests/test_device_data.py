"""The batched device augmentation path against the per-image CPU path (`transforms.py`).

Two kinds of evidence: (1) given the same random parameters, the batched ops give the CPU path's
pixels; (2) the parameters are drawn from the same distribution, shown statistically by decoding
flips, crop offsets and erased boxes from the outputs of both paths on coded images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mot_reid.errors import UserError
from mot_reid.reid.device_data import BatchAugment, DeviceTrainData, ImageCache, epoch_seed
from mot_reid.reid.recipe import InputConfig
from mot_reid.reid.transforms import build_train_transform

SIZE = (64, 32)  # small images keep the per-image CPU path fast; the algorithm does not depend on size
N_DRAWS = 1500
P_MIN = 1e-3  # fixed seeds make these deterministic; a real mismatch gives p-values far below this


def cfg(**changes) -> InputConfig:
    return dataclasses.replace(InputConfig(size=SIZE), **changes)


def denormalise(x: torch.Tensor, c: InputConfig) -> torch.Tensor:
    mean = torch.tensor(c.mean).view(-1, 3, 1, 1)
    std = torch.tensor(c.std).view(-1, 3, 1, 1)
    return torch.round((x * std + mean) * 255)


def cpu_path(image: Image.Image, c: InputConfig, n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    transform = build_train_transform(c)
    return torch.stack([transform(image) for _ in range(n)])


def device_path(image: Image.Image, c: InputConfig, n: int, seed: int = 0) -> torch.Tensor:
    batch = F.pil_to_tensor(image).unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    return BatchAugment(c, "cpu")(batch, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- same parameters, same pixels

def test_same_parameters_give_the_cpu_path_pixels():
    c = cfg()
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, *SIZE), dtype=torch.uint8, generator=g)
    augment = BatchAugment(c, "cpu")
    params = augment.draw(len(images), g)
    out = augment.apply(images, params)
    assert out.dtype == torch.float32 and out.shape == (64, 3, *SIZE)
    assert params.flip.any() and (~params.flip).any() and params.erase.any() and (~params.erase).any()
    to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(c.mean, c.std)])
    for i, image in enumerate(images):
        pil = F.to_pil_image(image)  # the CPU path flips, pads and crops PIL images
        if params.flip[i]:
            pil = F.horizontal_flip(pil)
        pil = F.pad(pil, [c.padding], fill=0)
        pil = F.crop(pil, int(params.crop_y[i]), int(params.crop_x[i]), *SIZE)
        expected = to_float(pil)
        if params.erase[i]:
            expected = F.erase(expected, int(params.erase_top[i]), int(params.erase_left[i]), int(params.erase_h[i]),
                               int(params.erase_w[i]), torch.tensor(0.0))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)


def test_channels_last_output_and_bad_input():
    images = torch.zeros((4, 3, *SIZE), dtype=torch.uint8)
    out = BatchAugment(cfg(), "cpu", channels_last=True)(images, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment(cfg(), "cpu")(images.float(), torch.Generator())


# ---------------------------------------------------------------- same distribution

def coded_image() -> Image.Image:
    """R encodes the column, G the row (never 0, the padding value), B constant."""
    h, w = SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    rgb = np.stack([8 * xs + 4, 3 * ys + 4, np.full_like(xs, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def decode_geometry(out: torch.Tensor, c: InputConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flip, crop_x, crop_y) per image, read off the centre pixel (never padding at pad 10)."""
    pix = denormalise(out, c)
    h, w = SIZE
    r, col = h // 2, w // 2
    src_x = (pix[:, 0, r, col] - 4) / 8
    src_y = (pix[:, 1, r, col] - 4) / 3
    flip = pix[:, 0, r, col + 1] < pix[:, 0, r, col]
    # Unflipped: output column col reads image column col + crop_x - pad; flipped: W-1 minus that.
    crop_x = torch.where(flip, w - 1 - src_x, src_x) - col + c.padding
    crop_y = src_y - r + c.padding
    return flip.numpy(), crop_x.long().numpy(), crop_y.long().numpy()


def two_sample_chi2(a: np.ndarray, b: np.ndarray, categories: int) -> float:
    table = np.stack([np.bincount(a, minlength=categories), np.bincount(b, minlength=categories)])
    return stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue


def test_flip_and_crop_offsets_have_the_cpu_path_distribution():
    c = cfg(erasing_p=0.0)
    image = coded_image()
    cpu = decode_geometry(cpu_path(image, c, N_DRAWS), c)
    dev = decode_geometry(device_path(image, c, N_DRAWS), c)
    span = 2 * c.padding + 1
    for name, (a, b) in zip(("flip", "crop_x", "crop_y"), zip(cpu, dev, strict=True), strict=True):
        a, b = a.astype(int), b.astype(int)
        categories = 2 if name == "flip" else span
        assert a.min() >= 0 and b.min() >= 0 and a.max() < categories and b.max() < categories, name
        assert set(a) == set(b) == set(range(categories)), name  # the same support, ends included
        assert two_sample_chi2(a, b, categories) > P_MIN, name
        # and both uniform (flip: p = 0.5; offsets: uniform over 0..2 pad)
        assert stats.chisquare(np.bincount(b, minlength=categories)).pvalue > P_MIN, name
    assert abs(dev[0].mean() - c.flip_p) < 0.05


def erased_boxes(out: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
    """(top, left, h, w) of the erased rectangle of each image (pixels set to exactly 0), or None."""
    boxes = []
    for mask in (out == 0).all(dim=1):
        if not mask.any():
            boxes.append(None)
            continue
        rows = torch.nonzero(mask.any(1)).squeeze(1)
        cols = torch.nonzero(mask.any(0)).squeeze(1)
        top, left = int(rows[0]), int(cols[0])
        h, w = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
        assert int(mask.sum()) == h * w  # a solid rectangle
        boxes.append((top, left, h, w))
    return boxes


def test_random_erasing_has_the_cpu_path_distribution():
    c = cfg(flip_p=0.0, padding=0)
    image = Image.new("RGB", SIZE[::-1], (200, 90, 30))  # normalises to values far from 0
    h_img, w_img = SIZE
    stats_of = {}
    for name, out in (("cpu", cpu_path(image, c, N_DRAWS, seed=1)), ("dev", device_path(image, c, N_DRAWS, seed=1))):
        boxes = [b for b in erased_boxes(out) if b is not None]
        top, left, h, w = (np.array(v) for v in zip(*boxes, strict=True))
        stats_of[name] = {
            "count": len(boxes),
            "area": h * w / (h_img * w_img),
            "log_aspect": np.log(h / w),
            # where the box sits among the positions where it fits (uniform on [0, 1])
            "top": (top + 0.5) / (h_img - h + 1),
            "left": (left + 0.5) / (w_img - w + 1),
        }
    cpu, dev = stats_of["cpu"], stats_of["dev"]
    table = [[cpu["count"], N_DRAWS - cpu["count"]], [dev["count"], N_DRAWS - dev["count"]]]
    assert stats.chi2_contingency(table).pvalue > P_MIN
    assert stats.binomtest(dev["count"], N_DRAWS, c.erasing_p).pvalue > P_MIN
    for key in ("area", "log_aspect", "top", "left"):
        assert stats.ks_2samp(cpu[key], dev[key]).pvalue > P_MIN, key
    lo, hi = c.erasing_area
    # the rounding of h and w moves the area a little beyond the drawn range
    assert dev["area"].min() > 0.5 * lo and dev["area"].max() < 1.2 * hi
    a = c.erasing_min_aspect
    assert np.all(np.abs(dev["log_aspect"]) <= abs(np.log(a)) + 0.3)


# ---------------------------------------------------------------- real images

def _real_crops(shared_data: Path, folder: Path, count: int = 24) -> list[str]:
    """Person crops cut from real MOT17 frames, written as JPEGs named PID_cCAM_N.jpg."""
    seq = shared_data / "mot" / "MOT17-mini" / "train" / "MOT17-09-FRCNN"
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",")
    paths = []
    for frame in sorted(set(gt[:, 0].astype(int))):
        rows = gt[(gt[:, 0] == frame) & (gt[:, 7] == 1) & (gt[:, 6] == 1) & (gt[:, 5] >= 64)]
        if not len(rows):
            continue
        with Image.open(seq / "img1" / f"{frame:06d}.jpg") as im:
            im = im.convert("RGB")
            for row in rows:
                x, y, w, h = row[2:6]
                box = (max(0, int(x) - 1), max(0, int(y) - 1), min(im.width, int(x + w)), min(im.height, int(y + h)))
                path = folder / f"{int(row[1]):04d}_c1_{frame:06d}.jpg"
                im.crop(box).save(path, quality=90)
                paths.append(str(path))
                if len(paths) == count:
                    return paths
    return paths


@pytest.fixture(scope="module")
def real_crops(shared_data, tmp_path_factory) -> list[str]:
    paths = _real_crops(shared_data, tmp_path_factory.mktemp("crops"))
    assert len(paths) >= 12
    return paths


@pytest.mark.slow
def test_cache_holds_exactly_what_the_cpu_path_resizes(real_crops):
    cache = ImageCache.build(real_crops, SIZE, "cpu", workers=2)
    assert cache.images.shape == (len(real_crops), 3, *SIZE) and cache.images.dtype == torch.uint8
    assert cache.on_device and cache.nbytes == len(real_crops) * 3 * SIZE[0] * SIZE[1]
    # The CPU training path with every random step off is resize -> normalise.
    c = cfg(flip_p=0.0, padding=0, erasing_p=0.0)
    plain = build_train_transform(c)
    augment = BatchAugment(c, "cpu")
    ours = augment(cache.images, torch.Generator())
    for i, path in enumerate(real_crops):
        with Image.open(path) as im:
            torch.testing.assert_close(ours[i], plain(im.convert("RGB")), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_normalised_pixel_statistics_match_the_cpu_path(real_crops):
    c = cfg()
    cache = ImageCache.build(real_crops, SIZE, "cpu", workers=2)
    draws = 40
    torch.manual_seed(5)
    transform = build_train_transform(c)
    cpu = []
    for path in real_crops:
        with Image.open(path) as im:
            im = im.convert("RGB")
            cpu += [transform(im) for _ in range(draws)]
    cpu = torch.stack(cpu)
    indices = torch.arange(len(real_crops)).repeat_interleave(draws)
    dev = BatchAugment(c, "cpu")(cache.images[indices], torch.Generator().manual_seed(5))
    mean_cpu, mean_dev = cpu.mean(dim=(0, 2, 3)), dev.mean(dim=(0, 2, 3))
    std_cpu, std_dev = cpu.std(dim=(0, 2, 3)), dev.std(dim=(0, 2, 3))
    assert torch.all((mean_cpu - mean_dev).abs() < 0.03), (mean_cpu, mean_dev)
    assert torch.all((std_cpu - std_dev).abs() < 0.03), (std_cpu, std_dev)
    # the erased share (exact zeros) is about p x mean area (0.5 x 0.21) on both paths
    zero_cpu, zero_dev = (cpu == 0).all(1).float().mean(), (dev == 0).all(1).float().mean()
    assert abs(zero_cpu - zero_dev) < 0.02 and 0.05 < zero_dev < 0.16


@pytest.mark.slow
def test_a_cache_headed_for_the_device_is_decoded_chunk_by_chunk(real_crops, tmp_path, monkeypatch):
    """The path a GPU-resident cache takes (decode a chunk on the host, copy it over), run on the CPU:
    the same pixels as decoding all at once, and a bad file in a later chunk is still named."""
    import mot_reid.reid.device_data as device_data

    whole = ImageCache.build(real_crops, SIZE, "cpu", workers=2).images
    monkeypatch.setattr(device_data, "_keep_on_device", lambda nbytes, device, placement: True)
    monkeypatch.setattr(device_data, "DEVICE_CHUNK", 5)
    chunked = ImageCache.build(real_crops, SIZE, "cpu", workers=2).images
    assert torch.equal(chunked, whole) and not chunked.is_pinned()
    garbage = tmp_path / "0009_c1_000001.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match="0009_c1_000001.jpg"):
        ImageCache.build([*real_crops[:7], str(garbage)], SIZE, "cpu", workers=2)


@pytest.mark.slow
def test_undecodable_images_are_user_errors(real_crops, tmp_path):
    garbage = tmp_path / "0001_c1_000001.jpg"
    garbage.write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match="0001_c1_000001.jpg"):
        ImageCache.build([real_crops[0], str(garbage)], SIZE, "cpu", workers=2)
    truncated = tmp_path / "0002_c1_000001.jpg"
    truncated.write_bytes(Path(real_crops[0]).read_bytes()[:300])
    with pytest.raises(UserError, match="0002_c1_000001.jpg"):
        ImageCache.build([str(truncated)], SIZE, "cpu", workers=1)
    with pytest.raises(UserError, match="missing.jpg"):
        ImageCache.build([str(tmp_path / "missing.jpg")], SIZE, "cpu", workers=1)


# ---------------------------------------------------------------- the train-data seam

def test_device_train_data_is_reproducible_per_epoch():
    n = 40
    g = torch.Generator().manual_seed(0)
    cache = ImageCache(torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=g), torch.device("cpu"))
    pids = [i // 4 for i in range(n)]
    batches = [[0, 1, 2, 3, 8, 9, 10, 11], [20, 21, 22, 23, 36, 37, 38, 39]]
    data = DeviceTrainData(cache, pids, batches, BatchAugment(cfg(), "cpu"), seed=7)
    first = [(x.clone(), y.clone()) for x, y in data]
    assert len(data) == 2 and first[0][0].shape == (8, 3, *SIZE)
    assert first[1][1].tolist() == [5, 5, 5, 5, 9, 9, 9, 9]
    second = [x for x, _ in data]  # without set_epoch the generator moves on
    assert not torch.equal(first[0][0], second[0])
    data.set_epoch(1)
    other = [x for x, _ in data]
    data.load_state_dict({"epoch": 0})  # a resume at the start of epoch 0 replays it exactly
    again = [x for x, _ in data]
    assert all(torch.equal(a[0], b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other[0])
    # another rank, another epoch, another seed: other augmentations
    assert len({epoch_seed(7, 0, 0), epoch_seed(7, 1, 0), epoch_seed(7, 0, 1), epoch_seed(8, 0, 0)}) == 4


def test_mid_epoch_resume_replays_the_remaining_batches_exactly():
    from mot_reid.reid.sampler import PKSampler

    n = 48
    g = torch.Generator().manual_seed(0)
    cache = ImageCache(torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=g), torch.device("cpu"))
    pids = [i // 4 for i in range(n)]

    def data() -> DeviceTrainData:
        return DeviceTrainData(cache, pids, PKSampler(pids, 3, 2, seed=5), BatchAugment(cfg(), "cpu"), seed=7)

    straight = data()
    straight.set_epoch(1)
    batches, state = [], None
    for step, (x, y) in enumerate(straight):
        batches.append((x.clone(), y.clone()))
        if step == 1:
            state = straight.state_dict()  # two batches trained on
    assert len(batches) == 4 and state["position"] == 2
    resumed = data()
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what the training loop does next
    rest = list(resumed)
    assert len(rest) == 2
    for (x, y), (xr, yr) in zip(batches[2:], rest, strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)


@pytest.mark.gpu
def test_gpu_batches_equal_cpu_batches_for_either_cache_placement():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, *SIZE), dtype=torch.uint8, generator=g)
    pids = list(range(32))
    batches = [list(range(0, 32, 2)), list(range(1, 32, 2))]
    expected = list(DeviceTrainData(ImageCache(images, torch.device("cpu")), pids, batches,
                                    BatchAugment(cfg(), "cpu"), seed=1))
    cuda = torch.device("cuda")
    for cached in (images.cuda(), images.pin_memory()):  # on the device / pinned host memory
        cache = ImageCache(cached, cuda)
        assert cache.on_device == cached.is_cuda
        got = list(DeviceTrainData(cache, pids, batches, BatchAugment(cfg(), cuda), seed=1))
        for (x, y), (xc, yc) in zip(expected, got, strict=True):
            assert xc.is_cuda and yc.is_cuda
            torch.testing.assert_close(xc.cpu(), x, rtol=0, atol=1e-6)
            assert torch.equal(yc.cpu(), y)


# ---------------------------------------------------------------- wired into the training loop

def test_training_on_the_device_path_resumes_exactly(tmp_path):
    from mot_reid import config
    from mot_reid.reid.distributed import DistContext
    from mot_reid.reid.recipe import ReIDRecipe
    from mot_reid.reid.train import TrainData, build_train_data, train

    rng = np.random.default_rng(0)
    (tmp_path / "data" / "train").mkdir(parents=True)
    for pid in range(6):
        colour = rng.integers(0, 256, 3)
        for i in range(1 + pid % 3):
            pixels = np.clip(colour + rng.normal(0, 40, (40, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / "train" / f"{pid:04d}_c1_{i:03d}.jpg")
    sets = ["model.backbone=resnet18", "model.pretrained=none", "input.size=[32,16]", "input.padding=2",
            "data.dataset=folder", "data.ids_per_batch=3", "data.images_per_id=2", "solver.warmup_epochs=1",
            "solver.milestones=[2]", "solver.checkpoint_every=1", "solver.eval_every=0", "runtime.device=cpu",
            "data.device_cache=on"]  # a bare YAML `on` is a boolean: the loader maps it back
    recipe = config.load(ReIDRecipe, None, [*sets, "solver.epochs=2"])
    assert recipe.data.device_cache == "on"
    items = [(str(p), int(p.name[:4]), 0) for p in sorted((tmp_path / "data" / "train").iterdir())]
    assert isinstance(build_train_data(items, recipe, torch.device("cpu"), DistContext()), DeviceTrainData)
    auto = config.load(ReIDRecipe, None, [*sets, "data.device_cache=auto", "data.num_workers=0"])
    assert isinstance(build_train_data(items, auto, torch.device("cpu"), DistContext()), TrainData)  # CPU: off

    full = train(recipe, tmp_path / "data", tmp_path / "full")
    train(config.load(ReIDRecipe, None, [*sets, "solver.epochs=1"]), tmp_path / "data", tmp_path / "part")
    resumed = train(recipe, tmp_path / "data", tmp_path / "part", resume=True)
    assert [e["loss"] for e in resumed["epochs"]] == [e["loss"] for e in full["epochs"]]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
