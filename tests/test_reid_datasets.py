"""Dataset readers on tiny look-alike folders of the real layouts (the real datasets are not here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mot_reid.errors import UserError
from mot_reid.reid.datasets import ImageDataset, load_dataset, relabel
from mot_reid.reid.recipe import InputConfig
from mot_reid.reid.transforms import build_test_transform


def touch_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)).save(path)


def make_market(root: Path) -> Path:
    base = root / "Market-1501-v15.09.15"
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_077419_03.jpg",
                 "0010_c6s4_002452_02.jpg"):
        touch_image(base / "bounding_box_train" / name)
    (base / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")
    for name in ("0003_c1s1_000001_00.jpg", "0004_c2s1_000001_00.jpg"):
        touch_image(base / "query" / name)
    for name in ("0003_c2s1_000101_01.jpg", "0003_c1s1_000151_01.jpg", "0004_c5s2_000001_01.jpg",
                 "0000_c1s1_000000_01.jpg", "-1_c1s1_000401_03.jpg", "-1_c3s1_000001_00.jpg"):
        touch_image(base / "bounding_box_test" / name)
    return base


def test_market_junk_dropped_distractors_kept_and_train_relabelled(tmp_path):
    make_market(tmp_path)
    ds = load_dataset(tmp_path, "market1501")  # the parent folder is accepted too
    assert ds.name == "market1501" and ds.root.endswith("Market-1501-v15.09.15")
    assert ds.num_train_pids == 3
    assert sorted({pid for _, pid, _ in ds.train}) == [0, 1, 2]
    assert sorted((Path(p).name[:4], pid, cam) for p, pid, cam in ds.train) == [
        ("0002", 0, 0), ("0002", 0, 1), ("0007", 1, 2), ("0010", 2, 5)]
    assert sorted((pid, cam) for _, pid, cam in ds.query) == [(3, 0), (4, 1)]
    gallery_pids = sorted(pid for _, pid, _ in ds.gallery)
    assert gallery_pids == [0, 3, 3, 4]  # two junk (-1) images dropped, the distractor (0) kept
    assert {cam for _, pid, cam in ds.gallery if pid == 4} == {4}


def test_duke_layout(tmp_path):
    base = tmp_path / "DukeMTMC-reID"
    touch_image(base / "bounding_box_train" / "0001_c2_f0046182.jpg")
    touch_image(base / "bounding_box_train" / "0005_c8_f0000001.jpg")
    touch_image(base / "query" / "0006_c1_f0001.jpg")
    touch_image(base / "bounding_box_test" / "0006_c3_f0002.jpg")
    ds = load_dataset(base, "dukemtmc")
    assert ds.num_train_pids == 2
    assert sorted(cam for _, _, cam in ds.train) == [1, 7]
    assert ds.query[0][1:] == (6, 0) and ds.gallery[0][1:] == (6, 2)


def test_msmt17_v1_and_v2_lists_and_val_joins_train(tmp_path):
    for version, (train_dir, test_dir) in {"MSMT17_V1": ("train", "test"),
                                          "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}.items():
        base = tmp_path / version
        train_rel = ["0000/0000_000_01_0303morning_0015_0.jpg", "0000/0000_001_05_0303morning_0017_1.jpg",
                     "0002/0002_000_15_0303noon_0100_0.jpg"]
        val_rel = ["0001/0001_000_03_0303morning_0020_0.jpg"]
        query_rel = ["0000/0000_000_02_0113morning_0001_0.jpg"]
        gallery_rel = ["0000/0000_003_07_0113noon_0002_0.jpg", "0001/0001_000_02_0113noon_0003_0.jpg"]
        for rel in train_rel + val_rel:
            touch_image(base / train_dir / rel)
        for rel in query_rel + gallery_rel:
            touch_image(base / test_dir / rel)
        (base / "list_train.txt").write_text("".join(f"{r} {int(r[:4])}\n" for r in train_rel))
        (base / "list_val.txt").write_text("".join(f"{r} {int(r[:4])}\n" for r in val_rel))
        (base / "list_query.txt").write_text("".join(f"{r} {int(r[:4])}\n" for r in query_rel))
        (base / "list_gallery.txt").write_text("".join(f"{r} {int(r[:4])}\n" for r in gallery_rel))
        ds = load_dataset(base, "msmt17")
        assert ds.num_train_pids == 3 and len(ds.train) == 4
        assert sorted((pid, cam) for _, pid, cam in ds.train) == [(0, 0), (0, 4), (1, 2), (2, 14)]
        assert all(Path(p).is_file() for p, _, _ in ds.train + ds.query + ds.gallery)
        assert f"/{test_dir}/" in ds.query[0][0]
        assert sorted((pid, cam) for _, pid, cam in ds.gallery) == [(0, 6), (1, 1)]


def test_msmt17_bad_list_line_is_one_line_error(tmp_path):
    base = tmp_path / "MSMT17_V1"
    (base / "train").mkdir(parents=True)
    (base / "test").mkdir()
    (base / "list_train.txt").write_text("garbage\n")
    with pytest.raises(UserError, match="list_train.txt:1"):
        load_dataset(base, "msmt17")


def test_plain_folder_with_splits_and_flat(tmp_path):
    touch_image(tmp_path / "a" / "train" / "12_c1_x.jpg")
    touch_image(tmp_path / "a" / "train" / "40_c2_y.png")
    touch_image(tmp_path / "a" / "query" / "7_c1_q.jpg")
    touch_image(tmp_path / "a" / "gallery" / "7_c3_g.jpg")
    ds = load_dataset(tmp_path / "a", "folder")
    assert ds.num_train_pids == 2 and sorted(pid for _, pid, _ in ds.train) == [0, 1]
    assert ds.query[0][1:] == (7, 0) and ds.gallery[0][1:] == (7, 2)
    touch_image(tmp_path / "flat" / "3_c1_a.jpg")
    touch_image(tmp_path / "flat" / "3_c4_b.jpg")
    flat = load_dataset(tmp_path / "flat", "folder")
    assert flat.num_train_pids == 1 and len(flat.train) == 2 and not flat.query and not flat.gallery


@pytest.mark.parametrize("name", ["market1501", "dukemtmc", "mot2reid", "msmt17", "folder"])
def test_empty_or_misnamed_folders_are_user_errors(tmp_path, name):
    (tmp_path / "bounding_box_train").mkdir()
    (tmp_path / "bounding_box_train" / "readme.txt").write_text("x")
    with pytest.raises(UserError) as info:
        load_dataset(tmp_path, name)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(tmp_path / "missing", name)


def test_market_missing_split_and_unknown_name(tmp_path):
    base = make_market(tmp_path)
    for p in (base / "query").iterdir():
        p.unlink()
    with pytest.raises(UserError, match="query"):
        load_dataset(base, "market1501")
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset(base, "cuhk03")


def test_relabel_is_sorted_and_dense():
    items, n = relabel([("a", 30, 0), ("b", 5, 1), ("c", 30, 2)])
    assert n == 2 and [pid for _, pid, _ in items] == [1, 0, 1]


def test_image_dataset_yields_tensor_and_names_broken_file(tmp_path):
    base = make_market(tmp_path)
    ds = load_dataset(base, "market1501")
    images = ImageDataset(ds.query, build_test_transform(InputConfig(size=(32, 16))))
    image, pid, camid, index = images[1]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 32, 16)
    assert (pid, camid, index) == (4, 1, 1)
    broken = base / "query" / "0009_c1s1_000001_00.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match="0009_c1s1_000001_00.jpg"):
        ImageDataset([(str(broken), 9, 0)])[0]
