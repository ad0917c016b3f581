"""Property tests: any number of random boxes, scores and features (NaN and zero-area included)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trackers import DeepSort, TrackerConfig

coord = st.one_of(st.floats(-50, 700, allow_nan=False), st.just(float("nan")), st.just(float("inf")))
detection = st.tuples(coord, coord, st.floats(0, 120), st.floats(0, 250),  # x, y, w (0 = zero area), h
                      st.one_of(st.floats(0, 1), st.just(float("nan"))), st.integers(0, 3))
frames = st.lists(st.lists(detection, max_size=12), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(frames=frames, config=st.sampled_from(["deepsort", "strongsort", "oc"]), with_features=st.booleans(),
       seed=st.integers(0, 2**16))
# Once found: a denormal-thin box (height 1.4e-45 px) made the Kalman aspect ratio overflow to inf.
@example(frames=[[(np.nan, np.nan, 21.5, 32.3, np.nan, 2), (np.nan, np.inf, 29.3, 2.1e-153, np.nan, 2),
                  (0.0, 0.0, 1.0, 1.401298464324817e-45, 1.0, 2)], []],
         config="strongsort", with_features=True, seed=3646)
def test_random_input_never_crashes_and_outputs_are_sane(frames, config, with_features, seed):
    cfg = {
        "deepsort": TrackerConfig(n_init=1),
        "strongsort": TrackerConfig(n_init=1, appearance="ema", nsa=True, matching="global", appearance_weight=0.98,
                                    second_association=True),
        # every observation-centric switch on, with the second association
        "oc": TrackerConfig(n_init=1, min_confidence=0.5, second_association=True, reupdate_after_gap=True,
                            direction_weight=0.5, recovery=True),
    }[config]
    tracker = DeepSort(cfg, frame_rate=25)
    rng = np.random.default_rng(seed)
    for dets in frames:
        arr = np.array([[x, y, x + w, y + h] for x, y, w, h, _, _ in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([s for *_, s, _ in dets], dtype=np.float32)
        classes = np.array([c for *_, c in dets], dtype=np.int64)
        feats = None
        if with_features:
            feats = rng.normal(size=(len(dets), 16)).astype(np.float32)
            if len(dets):
                feats[0] = np.nan if seed % 2 else 0.0  # unusable feature: dropped if confident, else unused
        out = tracker.update(arr, scores, classes, feats)
        assert len(out) == len(out.xyxy) == len(out.score) == len(out.cls) == len(out.det_index)
        assert len(np.unique(out.track_id)) == len(out)
        assert np.isfinite(out.xyxy).all() and np.isfinite(out.score).all()
        assert out.xyxy.dtype == np.float32 and out.track_id.dtype == np.int64
        matched = out.det_index[out.det_index >= 0]
        assert len(np.unique(matched)) == len(matched) and (matched < len(arr)).all()
        for k in matched:  # a detection the tracker took was a valid one
            assert np.isfinite(arr[k]).all() and arr[k, 2] > arr[k, 0] and arr[k, 3] > arr[k, 1]
            assert np.isfinite(scores[k])
