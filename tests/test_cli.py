"""The CLI contract: help for every command, version, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mot_reid import __version__
from mot_reid.cli import COMMANDS, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mot_reid.cli", *args], capture_output=True, text=True)


def test_top_level_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in ("track", "eval", "train", "eval-reid", "data"):
        assert name in out.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"mot-reid {__version__}"


@pytest.mark.parametrize("args", [["--no-such-flag"], ["no-such-command"], ["track", "--no-such-flag"], []])
def test_bad_invocation_is_one_line_and_exit_2(args):
    out = run_cli(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_trackers_package_does_not_import_torch():
    code = "import sys, trackers; assert 'torch' not in sys.modules and 'mot_reid' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_batch_and_track_turn_the_same_pipeline_options_into_the_same_config():
    from mot_reid.commands.track import overrides_from_args

    flags = ["--config", "c.yaml", "--detector", "hog", "--detections", "d.txt", "--reid", "none", "--tracker",
             "deepsort", "--device", "cpu", "--classes", "0", "2", "--conf", "0.3", "--imgsz", "320",
             "--max-frames", "5", "--set", "tracker.max_age=9"]
    parser = build_parser()
    track = parser.parse_args(["track", "v.mp4", "--out", "t.json", *flags])
    batch = parser.parse_args(["batch", "v.mp4", "--out-dir", "o", *flags])
    assert batch.config == track.config == "c.yaml"
    assert overrides_from_args(batch) == overrides_from_args(track)
    assert "max_frames=5" in overrides_from_args(batch) and "detector.classes=[0,2]" in overrides_from_args(batch)
