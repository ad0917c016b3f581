"""DeepSort lifecycle, cascade priority, and scenarios with synthetic boxes and features."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trackers import DeepSort, TrackerConfig
from trackers.assignment import matching_cascade, min_cost_matching
from trackers.track import TrackState


def box(cx, cy, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def step(tracker, centres, feats=None, score=0.9):
    xyxy = np.array([box(*c) for c in centres], dtype=np.float32).reshape(-1, 4)
    return tracker.update(xyxy, np.full(len(xyxy), score, np.float32), features=feats)


def unit(dim, k):
    v = np.zeros(dim, np.float32)
    v[k] = 1
    return v


def test_tentative_track_confirmed_after_n_init_hits():
    tracker = DeepSort(TrackerConfig(n_init=3))
    assert len(step(tracker, [(100, 100)])) == 0
    assert tracker.tracks[0].state == TrackState.TENTATIVE
    assert len(step(tracker, [(102, 100)])) == 0
    out = step(tracker, [(104, 100)])
    assert tracker.tracks[0].state == TrackState.CONFIRMED
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]


def test_tentative_track_deleted_on_first_miss():
    tracker = DeepSort(TrackerConfig())
    step(tracker, [(100, 100)])
    step(tracker, [(102, 100)])
    step(tracker, [])
    assert tracker.tracks == []


def test_confirmed_track_coasts_then_is_deleted_after_max_age():
    tracker = DeepSort(TrackerConfig(max_age=5))
    for k in range(3):
        step(tracker, [(100 + 2 * k, 100)])
    out = step(tracker, [])  # first miss: reported once with its predicted box
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [-1]
    assert np.isfinite(out.xyxy).all()
    for _ in range(4):
        assert len(step(tracker, [])) == 0  # missed > report_coasting_frames: alive but not reported
        assert tracker.tracks[0].state == TrackState.CONFIRMED
    step(tracker, [])  # sixth miss > max_age
    assert tracker.tracks == []


def test_coasting_track_resumes_with_same_id():
    tracker = DeepSort(TrackerConfig(max_age=10))
    for k in range(5):
        step(tracker, [(100 + 3 * k, 100)])
    for _ in range(3):
        step(tracker, [])
    out = step(tracker, [(124, 100)])
    assert out.track_id.tolist() == [1] and tracker.tracks[0].time_since_update == 0


def test_track_missed_max_age_frames_is_not_offered_to_the_cascade():
    """As in deep_sort: cascade levels 1..max_age; a track unseen max_age frames running starts over."""
    f = unit(8, 0)[None]
    tracker = DeepSort(TrackerConfig(max_age=2, n_init=1))
    step(tracker, [(100, 100)], f)
    for _ in range(2):  # two misses: alive (time_since_update 2 is not over max_age)
        step(tracker, [])
    assert tracker.tracks[0].state == TrackState.CONFIRMED
    out = step(tracker, [(100, 100)], f)  # same place and look, but 3 frames since the last update
    assert out.track_id.tolist() == [2]
    tracker = DeepSort(TrackerConfig(max_age=2, n_init=1))
    step(tracker, [(100, 100)], f)
    step(tracker, [])
    assert step(tracker, [(100, 100)], f).track_id.tolist() == [1]  # within max_age: same id


def test_n_init_one_confirms_immediately_and_max_age_scales_with_frame_rate():
    tracker = DeepSort(TrackerConfig(n_init=1, scale_max_age_by_frame_rate=True, max_age=30), frame_rate=10)
    assert len(step(tracker, [(50, 50)])) == 1
    assert tracker.max_age == 10


def test_cascade_gives_recently_seen_tracks_priority():
    # Detection 0 is cheaper for track 1, but track 0 was seen more recently and picks first.
    cost = np.array([[0.15, 0.9], [0.05, 0.9]])
    tsu = np.array([1, 2])
    matches, unmatched_rows, unmatched_cols = matching_cascade(cost, 0.2, tsu, np.array([0, 1]), np.array([0, 1]), 5)
    assert matches.tolist() == [[0, 0]]
    assert unmatched_rows.tolist() == [1] and unmatched_cols.tolist() == [1]
    # One global matching takes the cheaper pair instead.
    global_matches, _, _ = min_cost_matching(cost, 0.2)
    assert global_matches.tolist() == [[1, 0]]


def test_min_cost_matching_refuses_pairs_over_threshold():
    matches, rows, cols = min_cost_matching(np.array([[0.5, 0.1], [0.3, 0.9]]), 0.2)
    assert matches.tolist() == [[0, 1]] and rows.tolist() == [1] and cols.tolist() == [0]


@pytest.mark.parametrize("name", ["gallery", "ema"])
def test_crossing_targets_with_distinct_features_keep_ids(name):
    tracker = DeepSort(TrackerConfig(appearance=name))
    fa, fb = unit(8, 0), unit(8, 1)
    seen = {}
    for k in range(40):
        a, b = (100 + 5 * k, 200), (300 - 5 * k, 200)  # they overlap around k = 20
        out = step(tracker, [a, b], np.stack([fa, fb]))
        for tid, det in zip(out.track_id, out.det_index, strict=True):
            if det >= 0:
                seen.setdefault(int(det), set()).add(int(tid))
    assert len(seen[0]) == 1 and len(seen[1]) == 1 and seen[0] != seen[1]


def test_target_hidden_20_frames_is_reidentified_by_appearance():
    tracker = DeepSort(TrackerConfig(max_age=30))
    fa, fb = unit(8, 0), unit(8, 1)
    for _ in range(10):
        out = step(tracker, [(200, 200)], fa[None])
    first_id = int(out.track_id[0])
    for _ in range(20):
        step(tracker, [])
    # It comes back next to a newcomer that looks different; the old id follows the look.
    for _ in range(4):
        out = step(tracker, [(230, 200), (200, 200)], np.stack([fb, fa]))
    assert int(out.track_id[out.det_index == 1][0]) == first_id
    assert int(out.track_id[out.det_index == 0][0]) != first_id


def test_motion_only_follows_a_steady_walker():
    tracker = DeepSort(TrackerConfig())
    ids = set()
    for k in range(60):
        out = step(tracker, [(50 + 6 * k, 200 + k)])
        ids.update(out.track_id.tolist())
    assert ids == {1}


def test_second_association_uses_low_score_boxes_only_for_existing_tracks():
    tracker = DeepSort(TrackerConfig(second_association=True))
    for k in range(4):
        step(tracker, [(100 + 2 * k, 100)])
    out = step(tracker, [(108, 100)], score=0.2)
    assert out.track_id.tolist() == [1] and out.det_index.tolist() == [0]
    tracker_off = DeepSort(TrackerConfig())
    for k in range(4):
        step(tracker_off, [(100 + 2 * k, 100)])
    assert step(tracker_off, [(108, 100)], score=0.2).det_index.tolist() == [-1]


def test_invalid_detections_are_dropped_and_shapes_checked():
    tracker = DeepSort(TrackerConfig(n_init=1))
    xyxy = np.array([box(100, 100), [np.nan, 0, 10, 10], [5, 5, 5, 20], box(300, 100)], np.float32)
    out = tracker.update(xyxy, np.array([0.9, 0.9, 0.9, np.nan]))
    assert out.det_index.tolist() == [0]
    with pytest.raises(ValueError, match="xyxy must have shape"):
        tracker.update(np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match="scores must have shape"):
        tracker.update(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="features must have shape"):
        tracker.update(np.zeros((3, 4)), np.zeros(3), features=np.zeros((2, 8)))


def test_camera_motion_compensation_runs_on_frames():
    tracker = DeepSort(TrackerConfig(cmc="sparse_flow", n_init=1))
    rng = np.random.default_rng(0)
    texture = (rng.uniform(0, 255, (240, 320, 3))).astype(np.uint8)
    for k in range(3):
        frame = np.roll(texture, 2 * k, axis=1)  # camera pans: the scene shifts 2 px per frame
        out = tracker.update(np.array([box(100 + 2 * k, 120)], np.float32), np.array([0.9]), frame=frame)
    assert out.track_id.tolist() == [1]


@pytest.mark.parametrize("method", ["ecc", "sparse_flow"])
def test_camera_motion_estimate_points_the_way_the_scene_moves(method):
    from trackers.cmc import CameraMotion

    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (240, 320)).astype(np.uint8), (7, 7), 2)
    frame = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    camera = CameraMotion(method, downscale=1)
    camera.estimate(frame)
    warp = camera.estimate(np.roll(frame, 3, axis=1))  # scene content moves +3 px in x
    assert warp[0, 2] == pytest.approx(3.0, abs=0.3) and warp[1, 2] == pytest.approx(0.0, abs=0.3)


def test_denormal_thin_box_is_dropped_not_tracked_to_infinity():
    # Found by the property test: a 1 x 1.4e-45 px box made the Kalman aspect ratio w/h overflow.
    tracker = DeepSort(TrackerConfig(n_init=1, nsa=True))
    out = tracker.update(np.array([[0, 0, 1, 1.4e-45], box(100, 100)], np.float32), np.array([1.0, 0.9]))
    assert out.det_index.tolist() == [1]
    for _ in range(3):
        out = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0))
        assert np.isfinite(out.xyxy).all()


@pytest.mark.parametrize("config", ["strongsort", "mot-reid"])
def test_features_of_boxes_below_min_confidence_are_never_looked_at(shared_data, config):
    """Real PETS09-S2L1 boxes (YOLO-like share of weak ones via min_confidence 0.97): replacing the weak rows'
    features by NaN or zeros (what the pipeline passes for boxes it did not embed) changes no track."""
    from mot_reid.mot_data import load_sequence, read_detections
    from mot_reid.tracker_config import load_tracker_config

    seq = load_sequence(shared_data / "mot" / "PETS09-S2L1")
    dets = read_detections(seq.det_path, seq.num_frames, seq.seq_length)
    cfg = load_tracker_config(config, ["min_confidence=0.97", "low_score_threshold=0.5"])
    runs = {fill: DeepSort(cfg, frame_rate=seq.frame_rate) for fill in ("real", "nan", "zero")}
    outputs = {fill: [] for fill in runs}
    rng, weak_rows = np.random.default_rng(0), 0
    for frame in range(1, 301):
        xyxy, scores = dets.get(frame, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
        feats = rng.normal(size=(len(xyxy), 32)).astype(np.float32)
        weak = scores < cfg.min_confidence
        weak_rows += int(weak.sum())
        for fill, tracker in runs.items():
            f = feats.copy()
            f[weak] = {"real": f[weak], "nan": np.nan, "zero": 0.0}[fill]
            out = tracker.update(xyxy, scores, features=f)
            outputs[fill].append((out.track_id.tolist(), out.det_index.tolist(), out.xyxy.round(3).tolist()))
    assert weak_rows > 100
    assert outputs["nan"] == outputs["real"] and outputs["zero"] == outputs["real"]
