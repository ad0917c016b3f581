"""Detectors on real frames: YOLOv8n, the HOG fallback, MOT det files, and the `auto` choice."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from mot_reid.detection import (
    DetectorSettings,
    FileDetections,
    HogDetector,
    YoloDetector,
    build_detector,
    detector_kind,
    find_local_weights,
    online,
)
from mot_reid.errors import UserError


@pytest.fixture(scope="module")
def pets_frames():
    cap = cv2.VideoCapture("assets/pets09_s2l1_demo.mp4")
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    return frames


def _valid(det, h=576, w=768):
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (len(det), 4)
    assert np.all(det.xyxy[:, 2] > det.xyxy[:, 0]) and np.all(det.xyxy[:, 3] > det.xyxy[:, 1])
    assert np.all(det.xyxy >= -1) and np.all(det.xyxy[:, 2] <= w + 1) and np.all(det.xyxy[:, 3] <= h + 1)
    assert np.all((det.score > 0) & (det.score <= 1)) and np.all(det.cls == 0)


@pytest.mark.slow
def test_yolo_finds_people_in_a_batch(shared_data, pets_frames):
    det = YoloDetector(str(shared_data / "weights/yolov8n.pt"), "cpu", DetectorSettings(conf=0.25))
    out = det(pets_frames, [1, 2, 3])
    assert len(out) == 3
    for d in out:
        _valid(d)
        assert len(d) >= 3  # PETS09 frames 1-3 hold 5 people in the ground truth


def test_hog_finds_people(pets_frames):
    out = HogDetector(DetectorSettings(conf=0.25))(pets_frames[:1], [1])
    _valid(out[0])
    assert len(out[0]) >= 1


def test_hog_respects_classes(pets_frames):
    assert len(HogDetector(DetectorSettings(classes=[2]))(pets_frames[:1], [1])[0]) == 0


def test_file_detections_follow_det_txt(shared_data):
    path = shared_data / "mot/TUD-Campus/det/det.txt"
    rows = np.loadtxt(path, delimiter=",")
    dets = FileDetections(str(path))([np.zeros((1, 1, 3), np.uint8)] * 2, [1, 10_000])
    first = rows[rows[:, 0] == 1]
    assert len(dets[0]) == len(first) and len(dets[1]) == 0
    np.testing.assert_allclose(dets[0].xyxy[:, 2] - dets[0].xyxy[:, 0], first[:, 4], atol=1e-3)


def test_missing_weights_and_detections_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_detector(str(tmp_path / "nope.pt"), "cpu", DetectorSettings())
    with pytest.raises(UserError, match="not found"):
        build_detector("auto", "cpu", DetectorSettings(), detections=str(tmp_path / "det.txt"))


def test_auto_prefers_local_weights(tmp_path, monkeypatch, shared_data):
    monkeypatch.delenv("MOT_REID_DETECTOR", raising=False)
    (tmp_path / "yolov8n.pt").symlink_to(shared_data / "weights/yolov8n.pt")
    assert find_local_weights(tmp_path) == tmp_path / "yolov8n.pt"
    monkeypatch.setenv("MOT_REID_DETECTOR", str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="MOT_REID_DETECTOR"):
        find_local_weights(tmp_path)


def test_detector_kind_is_what_build_detector_gives(tmp_path, monkeypatch, shared_data):
    monkeypatch.chdir(tmp_path)  # no weights here
    monkeypatch.delenv("MOT_REID_DETECTOR", raising=False)
    det_txt = shared_data / "mot/TUD-Campus/det/det.txt"
    assert detector_kind("auto", str(det_txt)) == build_detector("auto", "cpu", DetectorSettings(),
                                                                 str(det_txt)).info["kind"] == "file"
    assert detector_kind("hog") == build_detector("hog", "cpu", DetectorSettings()).info["kind"] == "hog"
    weights = str(shared_data / "weights/yolov8n.pt")
    assert detector_kind(weights) == build_detector(weights, "cpu", DetectorSettings()).info["kind"] == "yolo"
    if find_local_weights() is None:  # auto: YOLO when it can get weights, else the HOG fallback
        assert detector_kind("auto", is_online=lambda: False) == "hog"
        assert detector_kind("auto", is_online=lambda: True) == "yolo"


def test_auto_offline_falls_back_to_hog_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # no weights here
    monkeypatch.delenv("MOT_REID_DETECTOR", raising=False)
    if find_local_weights() is not None:
        pytest.skip("Ultralytics' weights folder holds YOLO weights on this machine")
    if online():  # the real connectivity check: it must answer (not hang) offline
        pytest.skip("this machine is online: auto would download Ultralytics' default weights")
    with caplog.at_level(logging.WARNING, logger="mot_reid"):
        det = build_detector("auto", "cpu", DetectorSettings())
    assert isinstance(det, HogDetector) and det.info["kind"] == "hog" and "fallback_reason" in det.info
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HOG" in warnings[0] and "\n" not in warnings[0]
