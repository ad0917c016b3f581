"""mot-reid batch on real short clips: done/failed/skipped, same tracks as `mot-reid track`, both engines."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from mot_reid.cli import main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FAST = ["--detector", str(DATA / "weights" / "yolov8n.pt"), "--reid", "none", "--device", "cpu", "--no-progress"]
pytestmark = pytest.mark.slow


def _cut(src: Path, dst: Path, n: int = 12) -> None:
    cap = cv2.VideoCapture(str(src))
    ok, frame = cap.read()
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 10, frame.shape[1::-1])
    for _ in range(n):
        out.write(frame)
        ok, frame = cap.read()
    out.release()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    if not (DATA / "weights" / "yolov8n.pt").is_file():
        pytest.skip("shared data not present")
    root = tmp_path_factory.mktemp("clips")
    _cut(DATA / "mot" / "PETS09-S2L1" / "PETS09-S2L1.avi", root / "pets.mp4")
    _cut(DATA / "mot" / "TUD-Campus" / "TUD-Campus.mp4", root / "tud.mp4")
    (root / "bad.mp4").write_bytes(b"\x00garbage, not a video" * 100)
    return root


def _tracks(path: Path) -> list:
    return json.loads(path.read_text())["tracks"]


def _statuses(out: Path) -> dict:
    return {r["name"]: (r["status"], r.get("reason")) for r in json.loads((out / "batch.json").read_text())["inputs"]}


def test_local_batch_failed_input_resume_and_same_tracks(clips, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", str(clips), "--out-dir", str(out), "--workers", "1", "--mot-txt", *FAST]) == 1
    status = _statuses(out)
    assert status["pets"] == ("done", None) and status["tud"] == ("done", None)
    assert status["bad"][0] == "failed" and "cannot decode video" in status["bad"][1]
    assert (out / "tud" / "tracks.txt").is_file()
    assert main(["track", str(clips / "pets.mp4"), "--out", str(tmp_path / "single.json"), *FAST]) == 0
    assert _tracks(out / "pets" / "tracks.json") == _tracks(tmp_path / "single.json")
    # Second run: the done ones are skipped, the corrupt one tried (and failed) again.
    assert main(["batch", str(clips), "--out-dir", str(out), "--workers", "1", "--mot-txt", *FAST]) == 1
    status = _statuses(out)
    assert status["pets"][0] == status["tud"][0] == "skipped" and status["bad"][0] == "failed"


def test_two_local_workers_match_one(clips, tmp_path):
    sources = [str(clips / "pets.mp4"), str(clips / "tud.mp4")]
    assert main(["batch", *sources, "--out-dir", str(tmp_path / "two"), "--workers", "2", *FAST]) == 0
    assert main(["track", sources[1], "--out", str(tmp_path / "tud.json"), *FAST]) == 0
    assert _tracks(tmp_path / "two" / "tud" / "tracks.json") == _tracks(tmp_path / "tud.json")


def test_ray_engine(clips, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        assert main(["batch", str(clips), "--out-dir", str(out), "--engine", "ray", "--workers", "2", *FAST]) == 1
        status = _statuses(out)
        assert status["pets"][0] == status["tud"][0] == "done" and status["bad"][0] == "failed"
        assert main(["track", str(clips / "pets.mp4"), "--out", str(tmp_path / "p.json"), *FAST]) == 0
        assert _tracks(out / "pets" / "tracks.json") == _tracks(tmp_path / "p.json")
    finally:
        ray.shutdown()
