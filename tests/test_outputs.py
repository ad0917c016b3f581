"""Writers: tracks.json against its schema, MOT rows, the annotated MP4."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import jsonschema
import numpy as np

from mot_reid.mot_data import write_mot_results
from mot_reid.outputs import TrackCollector, VideoWriter, color, tracks_document, write_tracks_json

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "assets/tracks.schema.json").read_text())
SOURCE = {"path": "x.mp4", "kind": "video", "fps": 7.0, "width": 64, "height": 48, "frame_count": 3,
          "frames_read": 3, "frames_skipped": 0, "dropped": False}


def _collector():
    c = TrackCollector()
    c.add(1, np.array([1, 2]), np.array([[0, 0, 10, 20], [5, 5, 15, 25]], np.float32), np.array([0.9, 0.8]),
          np.array([0, 1]))
    c.add(2, np.array([1]), np.array([[1, 1, 11, 21]], np.float32), np.array([0.9]), np.array([-1]))
    c.add(3, np.array([], int), np.zeros((0, 4)), np.array([]), np.array([], int))
    return c


def _doc(c, complete=True):
    return tracks_document(c, source=SOURCE, config={"a": 1}, versions={"torch": "x"}, detector={"kind": "hog"},
                           embedder={"kind": "none"}, tracker={"name": "deepsort"}, complete=complete,
                           summary={"frames": 3, "tracks": 2, "seconds": 0.1, "fps": {"track": 30.0}})


def test_tracks_json_validates_and_groups_by_track(tmp_path):
    path = tmp_path / "out" / "tracks.json"
    write_tracks_json(path, _doc(_collector()))
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert [t["id"] for t in doc["tracks"]] == [1, 2]
    assert doc["tracks"][0]["frames"] == [1, 2] and doc["tracks"][0]["detected"] == [True, False]
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left behind


def test_schema_rejects_a_broken_document():
    doc = _doc(_collector())
    del doc["complete"]
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError:
        return
    raise AssertionError("schema accepted a document without 'complete'")


def test_mot_rows_are_one_based_xywh(tmp_path):
    c = _collector()
    write_mot_results(tmp_path / "r.txt", c.mot_rows())
    rows = np.loadtxt(tmp_path / "r.txt", delimiter=",")
    np.testing.assert_allclose(rows[0], [1, 1, 1, 1, 10, 20, 0.9, -1, -1, -1])
    assert rows[:, 0].tolist() == [1, 1, 2]


def test_video_has_every_frame_and_draws_boxes(tmp_path):
    path = tmp_path / "v.mp4"
    w = VideoWriter(path, 7.0, (64, 48), trail=5)
    for i in range(6):
        w.write(np.zeros((48, 64, 3), np.uint8), np.array([3]), np.array([[10 + i, 10, 30 + i, 40]], np.float32))
    w.close()
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    ok, frame = cap.read()
    assert ok and frame.max() > 100  # a coloured box was drawn on black
    assert color(3) == color(3) and color(3) != color(4)


def test_discarded_video_leaves_nothing(tmp_path):
    w = VideoWriter(tmp_path / "v.mp4", 7.0, (64, 48))
    w.write(np.zeros((48, 64, 3), np.uint8), np.array([], int), np.zeros((0, 4)))
    w.close(keep=False)
    assert list(tmp_path.iterdir()) == []


def _label_pixels(tmp_path, box, name):
    """Pixels of the id label's colour in the one frame written with `box`, outside the box outline."""
    path = tmp_path / f"{name}.mp4"
    writer = VideoWriter(path, 5, (240, 160), trail=0)
    writer.write(np.zeros((160, 240, 3), np.uint8), [7], [box])
    writer.close()
    ok, frame = cv2.VideoCapture(str(path)).read()
    assert ok
    near = np.abs(frame.astype(int) - np.array(color(7))).max(axis=2) < 60
    x1, y1, x2, y2 = (int(v) for v in box)
    outline = np.zeros_like(near)
    cv2.rectangle(outline.view(np.uint8), (x1, y1), (x2, y2), 1, 6)  # the box's 2-px outline, widened for blur
    return near & ~outline


def test_label_of_a_box_touching_the_top_edge_is_drawn_inside_the_image(tmp_path):
    top = _label_pixels(tmp_path, (60, 0, 180, 120), "top")
    lower = _label_pixels(tmp_path, (60, 40, 180, 159), "lower")  # room above: the whole label shows there
    ys = np.nonzero(top)[0]
    assert lower.sum() > 30 and ys.min() >= 4  # the label starts below the top edge, not cut by it
    assert abs(int(top.sum()) - int(lower.sum())) <= 0.2 * lower.sum()  # and as many pixels show as with room
