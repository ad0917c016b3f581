"""mot-reid batch on real short clips: done/failed/skipped, same tracks as `mot-reid track`, both engines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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


@pytest.fixture(scope="module")
def longer_clips(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("longer")  # not in `clips`: the tests above batch that whole folder
    paths = [root / f"clip{n}.mp4" for n in range(3)]
    for path in paths:
        _cut(DATA / "mot" / "PETS09-S2L1" / "PETS09-S2L1.avi", path, n=24)
    return paths


@pytest.mark.parametrize("engine, workers", [("local", "1"), ("local", "2"), ("ray", "2")])
def test_sigterm_stops_like_ctrl_c_keeping_finished_inputs(longer_clips, tmp_path, engine, workers):
    # SIGTERM (what a service manager or a cluster scheduler sends) once the first input is done.
    if engine == "ray":
        pytest.importorskip("ray")
    out = tmp_path / "out"
    cmd = ["batch", *map(str, longer_clips), "--out-dir", str(out), "--engine", engine, "--workers", workers,
           "--mot-txt", "--save-video", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "mot_reid.cli", *cmd], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while "done" not in _statuses_or_none(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    manifest = json.loads((out / "batch.json").read_text())
    assert manifest["finished"] is False
    status = {r["name"]: r["status"] for r in manifest["inputs"]}
    done = {name for name, s in status.items() if s == "done"}
    assert done and len(done) < 3 and set(status.values()) <= {"done", "pending"}
    assert manifest["counts"] == {s: list(status.values()).count(s) for s in set(status.values())}
    outputs = ["tracks.json", "tracks.mp4", "tracks.txt"]
    for name in status:
        files = sorted(p.name for p in (out / name).iterdir()) if (out / name).exists() else []
        # Finished inputs have all their outputs. One a worker was stopped in has none, or (stopped while writing
        # the outputs of a finished run) some of them whole; never a partial one or an atomic write's temp file.
        assert files == outputs if name in done else set(files) <= set(outputs), (name, files)
        if "tracks.json" in files:
            doc = json.loads((out / name / "tracks.json").read_text())
            assert doc["complete"] is True and doc["summary"]["frames"] == 24
        if "tracks.mp4" in files:
            assert cv2.VideoCapture(str(out / name / "tracks.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 24


def _statuses_or_none(out: Path) -> set:
    try:
        return {s for s, _ in _statuses(out).values()}
    except (OSError, ValueError):
        return set()
