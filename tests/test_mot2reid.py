"""mot2reid: split/segment logic on synthetic crops, and the real shared MOT sequences (slow)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import pytest

from mot_reid.cli import main
from mot_reid.errors import UserError
from mot_reid.reid.datasets import load_dataset
from mot_reid.reid.mot2reid import Crop, Mot2ReidConfig, assign, mot2reid, num_segments


def crops_of(tracks: dict[int, range]) -> list[Crop]:
    return [Crop("SEQ", t, f, (0, 0, 10, 60)) for t, frames in tracks.items() for f in frames]


def test_assign_segments_split_and_queries_have_cross_segment_matches():
    cfg = Mot2ReidConfig(segments=4, query_gap=0)
    tracks = {t: range(1 + 10 * t, 200 - 5 * t) for t in range(1, 13)}
    tracks[99] = range(1, 30)  # seen in one segment only: never a query
    crops = crops_of(tracks)
    next_pid = assign(crops, "SEQ", cfg, first_pid=7)
    assert next_pid == 7 + 13 and {c.pid for c in crops} == set(range(7, 20))
    assert {c.segment for c in crops} == {1, 2, 3, 4}
    train = {c.pid for c in crops if c.split == "bounding_box_train"}
    test = {c.pid for c in crops if c.split != "bounding_box_train"}
    assert not train & test and len(test) in (6, 7)
    by_pid = defaultdict(list)
    for c in crops:
        by_pid[c.pid].append(c)
    for c in crops:
        if c.split == "query":
            matches = [g for g in by_pid[c.pid] if g.split == "bounding_box_test" and g.segment != c.segment]
            assert matches
    queries = defaultdict(set)
    for c in crops:
        if c.split == "query":
            assert c.segment not in queries[c.pid]  # one query per identity and segment
            queries[c.pid].add(c.segment)
    # Deterministic: the same input gives the same split.
    again = crops_of(tracks)
    assign(again, "SEQ", cfg, first_pid=7)
    assert [(c.pid, c.segment, c.split) for c in again] == [(c.pid, c.segment, c.split) for c in crops]


def test_short_sequences_get_fewer_segments():
    cfg = Mot2ReidConfig(segments=4, query_gap=0)
    assert num_segments(4, 30, cfg) == 2 and num_segments(7, 30, cfg) == 3 and num_segments(800, 30, cfg) == 4
    crops = crops_of({1: range(1, 5), 2: range(1, 5)})
    assign(crops, "SHORT", cfg, 1)
    test = [c for c in crops if c.split != "bounding_box_train"]
    assert sorted(c.split for c in test) == ["bounding_box_test"] * 2 + ["query"] * 2
    # With a time gap: 71 frames at 25 fps (TUD-Campus) allow 2 segments of 0.5 s half-length; 8 frames none.
    gap = Mot2ReidConfig(segments=8, query_gap=0.5)
    assert num_segments(71, 25, gap) == 2 and num_segments(795, 7, gap) == 8 and num_segments(8, 30, gap) == 1
    crops = crops_of({1: range(1, 9), 2: range(1, 9)})
    assign(crops, "MINI", gap, 1, fps=30)
    assert "query" not in {c.split for c in crops} and "bounding_box_test" in {c.split for c in crops}


@pytest.mark.slow
def test_real_sequences(shared_data, tmp_path):
    mot = shared_data / "mot"
    out = tmp_path / "reid"
    # TUD-Campus and PETS09-S2L1 are videos; MOT17-mini is img1/ JPEGs (given as the folder of sequences).
    summary = mot2reid([mot / "MOT17-mini" / "train", mot / "TUD-Campus", mot / "PETS09-S2L1"], out,
                       Mot2ReidConfig(frame_step=3))
    assert sorted(summary["sequences"]) == sorted(
        [f"MOT17-{n}-FRCNN" for n in ("02", "04", "05", "09", "10", "11", "13")] + ["PETS09-S2L1", "TUD-Campus"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    ds = load_dataset(out, "mot2reid")
    train_pids = {int(Path(p).name[:4]) for p, _, _ in ds.train}
    test_pids = {pid for _, pid, _ in ds.query + ds.gallery}
    assert not train_pids & test_pids
    assert ds.num_train_pids == len(train_pids)
    # Every query has a same-identity gallery crop from another time segment (camera).
    gallery = defaultdict(set)
    for _, pid, cam in ds.gallery:
        gallery[pid].add(cam)
    assert all(gallery[pid] - {cam} for _, pid, cam in ds.query)
    # ... and at least query_gap (0.5 s) away in time: no near-copy from the next frame.
    fps = {"PETS09-S2L1": 7, "TUD-Campus": 25}
    pid_seq = {int(k): v["sequence"] for k, v in summary["pids"].items()}
    frame_of = {p: int(Path(p).stem.split("_")[2]) for p, _, _ in ds.query + ds.gallery}
    for qp, pid, cam in ds.query:
        gaps = [abs(frame_of[gp] - frame_of[qp]) for gp, gpid, gcam in ds.gallery if gpid == pid and gcam != cam]
        assert min(gaps) >= 0.5 * fps[pid_seq[pid]]
    assert {pid_seq[pid] for _, pid, _ in ds.query} == {"PETS09-S2L1", "TUD-Campus"}  # MOT17-mini is too short
    # Plausible counts: PETS09 has 19 ids over 795 frames (4650 boxes, every 3rd frame kept).
    pets = summary["sequences"]["PETS09-S2L1"]
    assert pets["ids"] == 19 and 1300 <= pets["crops"] <= 1560
    assert summary["sequences"]["TUD-Campus"]["ids"] == 8
    total = sum(s["ids"] for s in summary["sequences"].values())
    assert total == len(train_pids) + len(test_pids) and 100 <= total <= 146
    # Crops are real image content of the box size (not blank), named PPPP_cC_FFFFFF.jpg.
    path, pid, cam = ds.query[0]
    image = cv2.imread(path)
    assert image is not None and image.shape[0] >= 50 and image.std() > 5
    frame = int(Path(path).stem.split("_")[2])
    assert Path(path).name == f"{pid:04d}_c{cam + 1}_{frame:06d}.jpg"

    # A second run refuses to overwrite unless forced; --force replaces it with the same content.
    assert main(["data", "mot2reid", str(mot / "TUD-Campus"), "--out", str(out)]) == 2
    assert main(["data", "mot2reid", str(mot / "TUD-Campus"), "--out", str(out), "--force", "--frame-step", "2"]) == 0
    assert json.loads((out / "mot2reid.json").read_text())["sequences"].keys() == {"TUD-Campus"}


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError):
        mot2reid([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    with pytest.raises(UserError, match="--force"):
        mot2reid([tmp_path], tmp_path / "out")
    with pytest.raises(UserError, match="segments"):
        mot2reid([tmp_path], tmp_path / "new", Mot2ReidConfig(segments=12))
    assert (tmp_path / "out" / "x").read_text() == "keep me"
