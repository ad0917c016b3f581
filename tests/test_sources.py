"""Frame sources on real inputs: video, MOT img1/ and video sequences, globs, iterables, bad input."""

from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest

from mot_reid.errors import UserError
from mot_reid.sources import SourceError, iterable_source, open_source

DEMO = "assets/pets09_s2l1_demo.mp4"


@pytest.fixture(scope="module")
def demo_frames():
    cap = cv2.VideoCapture(DEMO)
    frames = [cap.read()[1] for _ in range(4)]
    cap.release()
    return frames


def test_video_metadata_and_frames():
    src = open_source(DEMO)
    assert (src.info.kind, src.info.fps, src.info.width, src.info.height, src.info.frame_count) == (
        "video", 7.0, 768, 576, 120)
    frames = []
    for frame in src:
        frames.append(frame)
        if len(frames) == 5:
            break
    assert [f.index for f in frames] == [1, 2, 3, 4, 5]
    assert frames[0].image.shape == (576, 768, 3) and frames[0].image.dtype == np.uint8
    assert src._thread is not None and not src._thread.is_alive()  # stopping early stops the decoder


def test_whole_video_is_read():
    src = open_source(DEMO, queue_size=2)
    assert sum(1 for _ in src) == 120 and src.skipped == 0


def test_mot_sequence_with_img1(shared_data):
    seq = shared_data / "mot/MOT17-mini/train/MOT17-05-FRCNN"
    for spec in (seq, seq / "img1"):
        src = open_source(str(spec))
        assert src.info.kind == "images" and src.info.fps == 14.0 and src.info.frame_count == len(
            list((seq / "img1").glob("*.jpg")))
        assert (src.info.width, src.info.height) == (640, 480)
    assert [f.index for f in open_source(str(seq))] == list(range(1, src.info.frame_count + 1))


def test_mot_sequence_with_single_video(shared_data):
    src = open_source(str(shared_data / "mot/TUD-Campus"))
    assert src.info.kind == "video" and src.info.path.endswith("TUD-Campus.mp4")
    assert (src.info.width, src.info.height, src.info.frame_count) == (640, 480, 71)


def test_glob_of_images_and_corrupt_frame_skipped(tmp_path, shared_data):
    img1 = shared_data / "mot/MOT17-mini/train/MOT17-05-FRCNN/img1"
    for name in ("000001.jpg", "000002.jpg", "000004.jpg"):
        shutil.copy(img1 / name, tmp_path / name)
    (tmp_path / "000003.jpg").write_bytes(b"not a jpeg")
    src = open_source(str(tmp_path / "*.jpg"))
    assert src.info.frame_count == 4
    assert [f.index for f in src] == [1, 2, 4]  # frame 3 skipped, numbering kept
    assert src.skipped == 1


def test_iterable_source_is_live_and_skips_bad_items(demo_frames):
    def gen():
        yield demo_frames[0]
        yield np.zeros((10, 10), np.uint8)  # wrong shape: skipped as corrupt
        yield from demo_frames[1:]

    src = iterable_source(gen(), fps=7)
    assert src.info.live and src.info.frame_count is None
    assert [f.index for f in src] == [1, 3, 4, 5]
    assert src.skipped == 1


def test_generator_failing_midway_raises_source_error(demo_frames):
    def gen():
        yield from demo_frames[:2]
        raise OSError("camera unplugged")

    src = iterable_source(gen())
    got = []
    with pytest.raises(SourceError, match="camera unplugged"):
        for f in src:
            got.append(f.index)
    assert got == [1, 2]


def test_bounded_queue_keeps_decoder_waiting():
    src = open_source(DEMO, queue_size=2)
    it = iter(src)
    next(it)
    threading.Event().wait(0.3)
    assert src.frames_read <= 5  # the decoder blocks on the full queue instead of reading ahead
    src.close()


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.mp4", "not found"),
    (lambda p: (p / "bad.mp4").write_bytes(b"\x00" * 1000) and p / "bad.mp4", "cannot decode video"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images or video"),
    (lambda p: p / "*.png", "no images match"),
])
def test_bad_input_is_one_line_user_error(tmp_path, make, match):
    with pytest.raises(UserError, match=match) as info:
        open_source(str(make(tmp_path)))
    assert "\n" not in str(info.value)


def test_empty_iterable_is_user_error():
    with pytest.raises(UserError, match="no frames"):
        iterable_source(iter([]))


def test_stream_that_cannot_open_is_user_error():
    with pytest.raises(UserError, match="cannot open stream"):
        open_source("rtsp://127.0.0.1:9/none")
