"""Results out: tracks.json, MOT rows and an annotated MP4, all written atomically.

tracks.json (schema: `assets/tracks.schema.json`) holds one object per track with its frames and
x1,y1,x2,y2 pixel boxes, plus the source's metadata, the resolved config, the versions, the
detector and embedder actually used, and `"complete"`: false when the run was interrupted or the
source failed, in which case the tracks cover the frames processed so far.
"""

from __future__ import annotations

import colorsys
import math
from array import array
from collections import defaultdict, deque
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from mot_reid import atomic
from trackers import boxes

SCHEMA_NAME = "mot-reid/tracks"
SCHEMA_VERSION = 1


class _TrackColumns:
    """One track's output as typed arrays: ~50 bytes a box instead of ~250 as Python lists of floats, so
    a long video's memory grows only by its output (BENCHMARKS.md, bench_memory)."""

    def __init__(self):
        self.frames, self.boxes = array("q"), array("d")  # boxes: x1, y1, x2, y2 per frame, flat
        self.scores, self.detected = array("d"), array("b")  # scores: NaN where the tracker gives none


class TrackCollector:
    """Accumulates per-frame tracker output into per-track columns (boxes only; frames are not kept)."""

    def __init__(self):
        self.tracks: dict[int, _TrackColumns] = defaultdict(_TrackColumns)
        self.frames_with_output = 0

    def add(self, frame: int, track_id, xyxy, score, det_index) -> None:
        if len(track_id):
            self.frames_with_output += 1
        for tid, box, s, d in zip(track_id, xyxy, score, det_index, strict=True):
            t = self.tracks[int(tid)]
            t.frames.append(int(frame))
            t.boxes.extend(float(v) for v in box)
            t.scores.append(float(s))
            t.detected.append(int(d >= 0))

    def as_list(self) -> list[dict]:
        return [{"id": tid, "frames": list(t.frames),
                 "boxes": [[round(v, 2) for v in t.boxes[i:i + 4]] for i in range(0, len(t.boxes), 4)],
                 "scores": [round(s, 4) if math.isfinite(s) else None for s in t.scores],
                 "detected": [bool(d) for d in t.detected]}
                for tid, t in sorted(self.tracks.items())]

    def mot_rows(self) -> list[tuple]:
        """MOT Challenge rows `frame,id,x,y,w,h,conf,-1,-1,-1` (1-based top-left), sorted by frame."""
        rows = []
        for tid, t in self.tracks.items():
            xyxy = np.asarray([round(v, 2) for v in t.boxes], np.float64).reshape(-1, 4)  # as tracks.json has them
            mot = boxes.xyxy_to_mot(xyxy).tolist()
            for f, (x, y, w, h), s in zip(t.frames, mot, t.scores, strict=True):
                rows.append((f, tid, x, y, w, h, round(s, 4) if math.isfinite(s) else 1.0, -1, -1, -1))
        rows.sort(key=lambda r: (r[0], r[1]))
        return rows


def tracks_document(collector: TrackCollector, *, source: dict, config: dict, versions: dict, detector: dict,
                    embedder: dict, tracker: dict, complete: bool, summary: dict) -> dict:
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "complete": bool(complete),
        "source": source, "detector": detector, "embedder": embedder, "tracker": tracker,
        "config": config, "versions": versions, "summary": summary, "tracks": collector.as_list(),
    }


def write_tracks_json(path: str | Path, document: dict) -> None:
    atomic.write_json(path, document)


def color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour per id (golden-ratio hue steps)."""
    h = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def label_origin(text: str, top_left: tuple[int, int], shape, scale: float = 0.6, thickness: int = 2):
    """Baseline-left point of an id label: above the box, or inside it where the box touches the top edge,
    so the whole label (glyphs and stroke) lies inside the image."""
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = min(max(top_left[0], 0), max(shape[1] - w, 0))
    y = top_left[1] - 4
    if y - h - thickness < 0:
        y = max(top_left[1], 0) + h + thickness + 2
    return x, min(y, shape[0] - baseline)


class VideoWriter:
    """MP4 with boxes, ids and short trails, written to a temp file and renamed on `close(keep=True)`."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], trail: int = 20):
        self._stack = ExitStack()
        self._tmp = self._stack.enter_context(atomic.atomic_path(path, suffix=".mp4"))
        self.writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            self._stack.close()
            from mot_reid.errors import UserError

            raise UserError(f"cannot write video {path} (OpenCV has no mp4v encoder here)")
        self.trails: dict[int, deque] = {}
        self.trail = trail
        self.frames_written = 0

    def write(self, image: np.ndarray, track_id, xyxy) -> None:
        image = image.copy()
        seen = set()
        for tid, (x1, y1, x2, y2) in zip(track_id, xyxy, strict=True):
            tid = int(tid)
            seen.add(tid)
            c = color(tid)
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(image, p1, p2, c, 2)
            cv2.putText(image, str(tid), label_origin(str(tid), p1, image.shape), cv2.FONT_HERSHEY_SIMPLEX, 0.6, c, 2)
            self.trails.setdefault(tid, deque(maxlen=self.trail)).append((int((x1 + x2) / 2), int(y2)))
        for tid in list(self.trails):
            if tid not in seen:  # a trail fades out with its track
                self.trails[tid].popleft()
                if not self.trails[tid]:
                    del self.trails[tid]
                    continue
            pts = np.array(self.trails[tid], np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], False, color(tid), 2)
        self.writer.write(image)
        self.frames_written += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file; with keep=False the temp file is discarded (the target is not touched)."""
        self.writer.release()
        if keep:
            self._stack.close()
        else:
            self._stack.__exit__(RuntimeError, RuntimeError("discarded"), None)
