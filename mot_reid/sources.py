"""Frames in: a video file, a MOT sequence, a folder or glob of images, a live stream, or any iterable.

`open_source(spec)` checks the input up front (missing file, undecodable video, empty folder ->
UserError, one line) and returns a `FrameSource`. Iterating it yields `Frame`s that a background
thread decodes into a bounded queue, so decoding overlaps the model work and memory stays flat
whatever the length. Corrupt frames are skipped with a warning and counted (`skipped`); a live
stream that drops ends the iteration cleanly (`dropped` is set).
"""

from __future__ import annotations

import configparser
import glob as globlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mot_reid.errors import UserError
from mot_reid.log import logger
from mot_reid.mot_data import VIDEO_SUFFIXES

# FFmpeg prints its own complaints (e.g. "moov atom not found") straight to stderr before we can say
# one clear line; keep it quiet unless the user asked otherwise. Read when the first capture opens.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# After this many unreadable frames in a row a video is treated as ended, not as corrupt.
MAX_CONSECUTIVE_FAILURES = 30
_END = object()


@dataclass
class SourceInfo:
    """What the output records about the input."""

    path: str
    kind: str  # video | images | stream | iterable
    fps: float
    width: int
    height: int
    frame_count: int | None  # None for live streams (unknown length)

    @property
    def live(self) -> bool:
        return self.kind in ("stream", "iterable")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Frame:
    index: int  # 1-based position in the source (MOT frame number); skipped frames keep their number
    image: np.ndarray  # BGR uint8, H x W x 3


class SourceError(RuntimeError):
    """The source failed mid-run (decoder error); the pipeline stops cleanly with what it has."""


class FrameSource:
    """Frames from one input, decoded in a background thread. Use `for frame in source`."""

    def __init__(self, info: SourceInfo, read: Callable[[], Iterator[np.ndarray | None]], queue_size: int = 16):
        self.info = info
        self._read = read  # yields images, or None for a frame that could not be decoded
        self.queue_size = max(1, queue_size)
        self.skipped = 0  # corrupt frames skipped
        self.frames_read = 0
        self.dropped = False  # a live stream ended by failing rather than by its end
        self.decode_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[Frame]:
        q: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._stop.clear()
        self._thread = threading.Thread(target=self._worker, args=(q,), name="mot-reid-decode", daemon=True)
        self._thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise SourceError(f"reading {self.info.path} failed: {item}") from item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the decode thread (also called when the consumer stops early)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _worker(self, q: queue.Queue) -> None:
        index = 0
        try:
            it = self._read()
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    image = next(it)
                except StopIteration:
                    break
                self.decode_seconds += time.perf_counter() - start
                index += 1
                if image is None:
                    self.skipped += 1
                    logger.warning("frame %d of %s could not be decoded; skipped", index, self.info.path)
                    continue
                self.frames_read += 1
                if not self._put(q, Frame(index, image)):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which stops cleanly
            self._put(q, exc)
        finally:
            self._put(q, _END)


def open_source(spec: str | int | Iterable[np.ndarray], fps: float | None = None, queue_size: int = 16) -> FrameSource:
    """A FrameSource for a path, glob, camera index, stream URL, or an iterable of BGR images.

    An iterable is treated as a live stream (frames processed one by one as they arrive).
    """
    if not isinstance(spec, (str, int, Path)):
        return iterable_source(spec, fps=fps or 30.0, queue_size=queue_size)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return _stream(int(spec), str(spec), queue_size)
    text = str(spec)
    if text.lower().startswith(STREAM_SCHEMES):
        return _stream(text, text, queue_size)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"no images match {text}")
        return _images(files, text, fps or 30.0, queue_size)
    path = Path(text)
    if not path.exists():
        raise UserError(f"source not found: {path}")
    if path.is_dir():
        return _folder(path, fps, queue_size)
    return _video(path, fps, queue_size)


def iterable_source(frames: Iterable[np.ndarray], fps: float = 30.0, name: str = "<iterable>",
                    queue_size: int = 4) -> FrameSource:
    """A live source over any iterable of BGR uint8 images (a generator, a camera wrapper, tests).

    The first image is taken eagerly to learn the frame size.
    """
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise UserError(f"source {name} yielded no frames") from None
    first = _check_image(first, name)
    h, w = first.shape[:2]

    def read():
        yield first
        for image in it:
            yield image if _is_image(image) and image.shape == first.shape else None

    return FrameSource(SourceInfo(name, "iterable", float(fps), w, h, None), read, queue_size)


def _folder(path: Path, fps: float | None, queue_size: int) -> FrameSource:
    """A MOT sequence folder (img1/ or its single video file), or a plain folder of images."""
    if (path / "img1").is_dir():
        path = path / "img1"
    # seqinfo.ini sits beside img1/ in the MOT layout.
    seq_fps = fps or _seqinfo_fps(path) or (_seqinfo_fps(path.parent) if path.name == "img1" else None)
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return _images(images, str(path), seq_fps or 30.0, queue_size)
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) == 1:
        return _video(videos[0], seq_fps, queue_size)
    if len(videos) > 1:
        raise UserError(f"{path} holds {len(videos)} videos; pass one of them")
    raise UserError(f"no images or video found in {path}")


def _seqinfo_fps(folder: Path) -> float | None:
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
        return float(parser["Sequence"]["frameRate"])
    except (KeyError, ValueError, configparser.Error):
        return None


def _images(files: list[Path], name: str, fps: float, queue_size: int) -> FrameSource:
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise UserError(f"cannot decode image {files[0]}")
    h, w = first.shape[:2]

    def read():
        for f in files:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            # A frame of another size would break batching; treat it as corrupt.
            yield image if image is not None and image.shape[:2] == (h, w) else None

    return FrameSource(SourceInfo(name, "images", float(fps), w, h, len(files)), read, queue_size)


def _video(path: Path, fps: float | None, queue_size: int) -> FrameSource:
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise UserError(f"cannot decode video {path}")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    video_fps = fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
    h, w = first.shape[:2]
    cap.release()

    def read():
        # Reopened here so the decoding happens in the decode thread.
        cap = cv2.VideoCapture(str(path))
        try:
            failures = 0
            read_so_far = 0
            while True:
                ok, image = cap.read()
                if ok and image is not None:
                    failures = 0
                    read_so_far += 1
                    yield image
                    continue
                # A failed read before the container's announced end is a corrupt frame; many in a
                # row (or past the end) is the end of the file.
                failures += 1
                if count is None or read_so_far + failures > count or failures > MAX_CONSECUTIVE_FAILURES:
                    return
                yield None
        finally:
            cap.release()

    return FrameSource(SourceInfo(str(path), "video", float(video_fps), w, h, count), read, queue_size)


def _stream(target: int | str, name: str, queue_size: int) -> FrameSource:
    cap = cv2.VideoCapture(target)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise UserError(f"cannot open stream {name}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    h, w = first.shape[:2]
    source: FrameSource

    def read():
        try:
            yield first
            while True:
                ok, image = cap.read()
                if not ok or image is None:
                    # A live stream has no announced end: a failed read means it dropped.
                    source.dropped = True
                    logger.warning("stream %s stopped delivering frames; finishing with what was read", name)
                    return
                yield image
        finally:
            cap.release()

    source = FrameSource(SourceInfo(name, "stream", float(fps), w, h, None), read, queue_size)
    return source


def _is_image(image) -> bool:
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _check_image(image, name: str) -> np.ndarray:
    if not _is_image(image):
        raise UserError(f"source {name} must yield BGR uint8 images of shape HxWx3")
    return image
