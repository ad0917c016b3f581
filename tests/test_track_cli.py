"""`mot-reid track` as a user runs it: bad input in one line (exit 2), Ctrl-C in a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mot_reid.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.mp4", "source not found"),
    (lambda p: (p / "bad.avi").write_bytes(b"\x01" * 4096) and p / "bad.avi", "cannot decode video"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images or video"),
])
def test_bad_source_is_one_line_exit_2(tmp_path, capsys, make, match):
    code = main(["track", str(make(tmp_path)), "--out", str(tmp_path / "t.json"), "--reid", "none",
                 "--detector", "hog"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0] and err[0].startswith("mot-reid track: error:")
    assert not (tmp_path / "t.json").exists()


def test_bad_options_are_one_line_exit_2(tmp_path, capsys):
    demo = str(REPO / "assets/pets09_s2l1_demo.mp4")
    for extra, match in ((["--device", "cuda:7"], "cuda"), (["--reid", str(tmp_path / "x.pth")], "not found"),
                         (["--set", "detector.nope=1"], "unknown config key"),
                         (["--tracker", "nosuch"], "unknown tracker config")):
        code = main(["track", demo, "--out", str(tmp_path / "t.json"), "--detector", "hog", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and match in err[0], (extra, err)


def test_max_frames_and_mot_txt(tmp_path, capsys):
    out = tmp_path / "t.json"
    code = main(["track", str(REPO / "assets/pets09_s2l1_demo.mp4"), "--out", str(out), "--detector", "hog",
                 "--reid", "none", "--max-frames", "4", "--mot-txt", str(tmp_path / "m.txt"), "--no-progress",
                 "--set", "tracker.n_init=1"])
    doc = json.loads(out.read_text())
    assert code == 0 and doc["complete"] and doc["summary"]["frames"] == 4 and doc["detector"]["kind"] == "hog"
    assert doc["tracker"]["name"] == "motion"  # auto on HOG boxes: not the YOLO-score thresholds
    assert doc["tracker"]["config"]["n_init"] == 1 and doc["config"]["max_frames"] == 4
    assert "4 frames" in capsys.readouterr().err  # the one-line summary


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stop_signal_in_a_real_process_leaves_valid_incomplete_json(tmp_path, sig):
    # SIGTERM (a service manager, `kill`, a container stop) behaves as Ctrl-C does.
    out = tmp_path / "t.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mot_reid.cli", "track", str(REPO / "assets/pets09_s2l1_demo.mp4"), "--out", str(out),
         "--detector", "hog", "--reid", "none", "--no-progress", "--set", "detector.batch=1"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in proc.stderr:  # wait until the models are loaded and frames flow
        if line.startswith("INFO: tracking"):
            break
    time.sleep(3)
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    doc = json.loads(out.read_text())
    assert proc.returncode == 130, rest
    assert doc["complete"] is False and 0 < doc["summary"]["frames"] < 120
    assert "interrupted" in rest


def test_truncated_mp4_gives_only_our_line_on_stderr(tmp_path):
    # A real MP4 cut short (no moov atom): FFmpeg's own complaint must not reach the user's terminal.
    broken = tmp_path / "cut.mp4"
    broken.write_bytes((REPO / "assets/pets09_s2l1_demo.mp4").read_bytes()[10_000:20_000])
    cmd = [sys.executable, "-m", "mot_reid.cli", "track", str(broken), "--out", str(tmp_path / "t.json")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"mot-reid track: error: cannot decode video {broken}"]
    assert not (tmp_path / "t.json").exists()


def test_tracker_keys_are_checked_against_the_config_auto_will_pick_before_any_model_loads(tmp_path, capsys,
                                                                                          shared_data, monkeypatch):
    import mot_reid.track_job as track_job

    def no_models(cfg):
        raise AssertionError("models were loaded before the tracker keys were checked")

    monkeypatch.setattr(track_job, "build_models", no_models)
    # motion_yolo (auto on YOLO boxes without ReID) has low_score_threshold 0.3: a split at 0.25 is refused.
    code = main(["track", str(REPO / "assets/pets09_s2l1_demo.mp4"), "--out", str(tmp_path / "t.json"),
                 "--detector", str(shared_data / "weights/yolov8n.pt"), "--reid", "none",
                 "--set", "tracker.min_confidence=0.25"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "motion_yolo" in err[0] and "low_score_threshold" in err[0], err
