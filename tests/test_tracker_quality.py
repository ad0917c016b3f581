"""Tracking quality of the shipped tracker configs on real data: OSNet features + public detections.

The floors sit a little under the measured numbers (BENCHMARKS.md, section tracking_quality), so a
regression in the tracker, the embedder's crops or the config shows up as a failure.
"""

from __future__ import annotations

import json

import pytest

from mot_reid.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("tracker, floors", [
    # Measured on TUD-Campus: deepsort HOTA 49.6 / IDF1 67.7; mot-reid 52.3 / 74.2
    # (peers with the same inputs: deep_sort 51.4 / 71.7, BoxMOT BoT-SORT 52.3 / 72.0).
    ("deepsort", (48.0, 66.0)),
    ("mot-reid", (50.5, 72.0)),
])
def test_tud_campus_public_detections_with_osnet(tmp_path, shared_data, tracker, floors):
    json_path = tmp_path / "scores.json"
    args = ["eval", str(shared_data / "mot" / "TUD-Campus"), "--detections", "public", "--tracker", tracker,
            "--reid", str(shared_data / "weights" / "osnet_x0_25_msmt17.pth"), "--device", "cpu",
            "--out-dir", str(tmp_path / "run"), "--json", str(json_path)]
    assert main(args) == 0
    scores = json.loads(json_path.read_text())["TUD-Campus"]
    assert scores["HOTA"] >= floors[0] and scores["IDF1"] >= floors[1], scores
