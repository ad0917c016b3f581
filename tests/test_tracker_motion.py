"""The motion-only switches on constructed tracks: OC-SORT's re-update after a gap, direction consistency
and recovery, ByteTrack's second association as the shipped `motion` config sets it, and `--tracker auto`."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mot_reid.tracker_config import load_tracker_config, resolve_tracker_name
from trackers import DeepSort, TrackerConfig
from trackers.boxes import xyah_to_xyxy, xyxy_to_xyah
from trackers.kalman import BoxKalman
from trackers.observation import direction_cost, reupdate, virtual_path


def box(cx, cy, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def step(tracker, boxes_, score=0.9):
    xyxy = np.array(boxes_, dtype=np.float32).reshape(-1, 4)
    return tracker.update(xyxy, np.full(len(xyxy), score, np.float32))


def test_virtual_path_moves_centre_and_size_linearly_to_the_new_box():
    path = virtual_path(np.array(box(100, 200, 40, 100)), np.array(box(140, 220, 60, 120)), 4)
    assert path.shape == (4, 4)
    np.testing.assert_allclose(path[:, 0], [110, 120, 130, 140])
    np.testing.assert_allclose(path[:, 1], [205, 210, 215, 220])
    np.testing.assert_allclose(path[:, 3], [105, 110, 115, 120])
    np.testing.assert_allclose(path[:, 2] * path[:, 3], [45, 50, 55, 60])  # width


def test_reupdate_after_a_gap_refilters_from_the_last_observation_along_the_virtual_path():
    def walk_hide_refind(cfg):
        tracker = DeepSort(cfg)
        for k in range(5):
            step(tracker, [box(100 + 4 * k, 200, 100, 200)])
        saved = tuple(a.copy() for a in tracker.tracks[0].observed_state) if cfg.reupdate_after_gap else None
        for _ in range(5):  # lost for 5 frames
            step(tracker, [])
        out = step(tracker, [box(158, 200, 100, 200)])  # found 6 frames later, 42 px on: 7 px/frame
        assert out.track_id.tolist() == [1]
        return tracker, saved

    tracker, (saved_mean, saved_cov) = walk_hide_refind(TrackerConfig(n_init=1, reupdate_after_gap=True))
    # The spec, by hand: from the state at the last observation (x = 116), six predict + update steps on
    # boxes 7 px apart, the sixth being the new detection.
    kf, mean, cov = BoxKalman(), saved_mean[None], saved_cov[None]
    for k in range(1, 7):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_xyah(np.array(box(116 + 7 * k, 200, 100, 200)))[None])
    np.testing.assert_allclose(tracker.mean[0], mean[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tracker.cov[0], cov[0], rtol=1e-9, atol=1e-9)
    last, new = np.array(box(116, 200, 100, 200)), np.array(box(158, 200, 100, 200))
    np.testing.assert_allclose(reupdate(kf, saved_mean, saved_cov, last, new, 6)[0], mean[0])
    # Without the switch the coasting prediction is corrected once: a different state.
    plain, _ = walk_hide_refind(TrackerConfig(n_init=1))
    assert np.abs(plain.mean[0] - tracker.mean[0]).max() > 1e-2


def test_direction_cost_is_zero_ahead_one_behind_and_zero_without_a_direction():
    anchors = np.array([box(100, 100), box(100, 100)])
    dets = np.array([box(120, 100), box(80, 100), box(100, 120)])
    cost = direction_cost(np.array([[1.0, 0.0], [0.0, 0.0]]), anchors, dets)
    np.testing.assert_allclose(cost[0], [0.0, 1.0, 0.5], atol=1e-9)
    np.testing.assert_array_equal(cost[1], 0.0)


def _walk_right(tracker, frames=6, speed=3.0, size=200.0):
    for k in range(frames):
        step(tracker, [box(300 + speed * k, 300, size, size)])
    return 300 + speed * (frames - 1)  # centre x of the last observation


def test_direction_consistency_prefers_the_detection_ahead_over_a_slightly_closer_one_behind():
    chosen = {}
    for weight in (0.0, 0.1):
        tracker = DeepSort(TrackerConfig(direction_weight=weight))
        last_x = _walk_right(tracker)
        predicted = xyah_to_xyxy(tracker.kalman.predict(tracker.mean, tracker.cov)[0][0, :4])
        px = (predicted[0] + predicted[2]) / 2
        ahead, behind = box(px + 15, 300, 200, 200), box(px - 14, 300, 200, 200)  # behind overlaps a bit more
        assert px - 14 < last_x - 6  # behind even the observation 3 frames back: the walker would have turned
        out = step(tracker, [behind, ahead])
        chosen[weight] = out.det_index[out.track_id == 1].tolist()
    assert chosen == {0.0: [0], 0.1: [1]}


def test_recovery_refinds_a_track_that_stopped_while_hidden_by_its_last_observed_box():
    ids = {}
    for recovery in (False, True):
        tracker = DeepSort(TrackerConfig(recovery=recovery))
        for k in range(8):
            step(tracker, [box(100 + 15 * k, 200)])
        for _ in range(4):  # hidden; the prediction runs on at 15 px/frame
            step(tracker, [])
        for _ in range(3):  # it had stopped where it was last seen
            out = step(tracker, [box(205, 200)])
        ids[recovery] = out.track_id.tolist()
    assert ids == {False: [2], True: [1]}


@pytest.mark.parametrize("name", ["motion", "motion_yolo"])
def test_shipped_motion_config_extends_tracks_with_low_score_boxes_but_starts_none_from_them(name):
    cfg = load_tracker_config(name)
    assert cfg.second_association and cfg.low_score_threshold < cfg.min_confidence
    weak = (cfg.min_confidence + cfg.low_score_threshold) / 2
    tracker = DeepSort(cfg)
    for k in range(4):
        step(tracker, [box(100 + 2 * k, 100)])
    out = step(tracker, [box(108, 100), box(400, 100)], score=weak)  # the known person, and a stranger
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]
    assert len(tracker.tracks) == 1  # the weak stranger started no track
    deepsort = DeepSort(load_tracker_config("deepsort", [f"min_confidence={cfg.min_confidence}"]))
    for k in range(4):
        step(deepsort, [box(100 + 2 * k, 100)])
    assert step(deepsort, [box(108, 100)], score=weak).det_index.tolist() == [-1]


def test_auto_picks_motion_without_appearance_and_mot_reid_with_it():
    assert resolve_tracker_name("auto", with_appearance=False) == "motion"
    assert resolve_tracker_name("auto", with_appearance=False, detector_kind="hog") == "motion"
    assert resolve_tracker_name("auto", with_appearance=False, detector_kind="yolo") == "motion_yolo"
    assert resolve_tracker_name("auto", with_appearance=True, detector_kind="yolo") == "mot-reid"
    assert resolve_tracker_name("auto", with_appearance=True) == "mot-reid"
    assert resolve_tracker_name("deepsort", with_appearance=False, detector_kind="yolo") == "deepsort"


def test_motion_yolo_differs_from_motion_only_in_its_score_thresholds():
    motion, yolo = (dataclasses.asdict(load_tracker_config(n)) for n in ("motion", "motion_yolo"))
    assert {k for k in motion if motion[k] != yolo[k]} <= {"min_confidence", "low_score_threshold",
                                                            "second_max_iou_distance"}
    assert yolo["min_confidence"] < motion["min_confidence"]  # YOLO's person scores sit lower



def test_peers_script_without_boxmot_says_what_to_install_in_one_line(shared_data):
    if importlib.util.find_spec("boxmot") is not None:
        pytest.skip("boxmot is installed in this interpreter")
    script = Path(__file__).resolve().parents[1] / "scripts" / "peers_motion.py"
    run = subprocess.run([sys.executable, str(script), str(shared_data / "mot" / "TUD-Campus"), "--no-write"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'boxmot==25.*'" in lines[0]
