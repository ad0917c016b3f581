"""Track one source: decode -> batched detect -> batched embed -> tracker -> writers.

Three threads, joined by bounded queues so memory stays flat whatever the length:
- the source's decode thread fills a queue of frames;
- the model thread groups frames into batches (one frame at a time for live sources), detects
  (Ultralytics does its own letterbox and upload of the frames), uploads the batch once for the
  embedder, and embeds in one call every box of the batch the tracker can match by appearance
  (`wants_features`: boxes under its min_confidence are never compared by appearance, so cost no crop);
- the calling thread runs the tracker (CPU) and the writers while the model thread already works
  on the next batch.
Ctrl-C / SIGTERM or a source failing mid-run stop all three and return the results so far,
marked incomplete.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mot_reid.detection import Detections
from mot_reid.log import logger, progress
from mot_reid.outputs import TrackCollector, VideoWriter
from mot_reid.signals import sigterm_as_interrupt
from mot_reid.sources import Frame, FrameSource, SourceError

_END = object()


@dataclass
class StageTimes:
    decode: float = 0.0
    detect: float = 0.0
    embed: float = 0.0
    track: float = 0.0
    write: float = 0.0

    def fps(self, frames: int) -> dict[str, float | None]:
        return {name: (round(frames / sec, 2) if sec > 0 else None) for name, sec in vars(self).items()}


@dataclass
class RunResult:
    collector: TrackCollector
    frames: int = 0  # frames that went through the tracker
    last_frame: int = 0
    complete: bool = True
    stopped_by: str | None = None  # interrupt | source-error
    seconds: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)

    def summary(self) -> dict:
        fps = self.times.fps(self.frames)
        fps["end_to_end"] = round(self.frames / self.seconds, 2) if self.seconds > 0 else None
        return {"frames": self.frames, "tracks": len(self.collector.tracks), "seconds": round(self.seconds, 3),
                "fps": fps}

    def summary_line(self) -> str:
        fps = self.summary()["fps"]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in fps.items() if k not in ("end_to_end", "write") and v)
        state = "" if self.complete else f" [incomplete: {self.stopped_by}]"
        return (f"{self.frames} frames, {len(self.collector.tracks)} tracks in {self.seconds:.1f} s "
                f"({fps['end_to_end'] or 0:.1f} fps end to end; per stage fps: {stages}){state}")


class _Interrupted(Exception):
    pass


class Pipeline:
    """Holds the models; `run(source, tracker)` tracks one source (reusable across sequences)."""

    def __init__(self, detector, embedder, device: torch.device, batch: int = 8):
        self.detector = detector
        self.embedder = embedder
        self.device = device
        self.batch = max(1, batch)

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images))
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    def _embed(self, images: list[np.ndarray], dets: list[Detections], wants_features) -> list[np.ndarray | None]:
        """Features of the boxes the tracker can use (`wants_features`); zero rows stand in for the rest, so
        weak boxes (YOLO at conf 0.1 gives many) cost no crop. A frame gets None when nothing was embedded."""
        masks = [wants_features(d.xyxy, d.score) for d in dets]
        if not any(m.any() for m in masks):
            return [None] * len(dets)
        picked = self.embedder(self._upload(images), [d.xyxy[m] for d, m in zip(dets, masks, strict=True)])
        dim = max(f.shape[1] for f in picked)
        feats = []
        for mask, f in zip(masks, picked, strict=True):
            full = np.zeros((len(mask), dim), np.float32)
            full[mask] = f
            feats.append(full)
        return feats

    def _model_worker(self, frames_iter, live: bool, out: queue.Queue, stop: threading.Event, times: StageTimes,
                      wants_features):
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            size = 1 if live else self.batch
            pending: list[Frame] = []
            it = iter(frames_iter)
            exhausted = False
            while not exhausted and not stop.is_set():
                pending = []
                for frame in it:
                    pending.append(frame)
                    if len(pending) >= size:
                        break
                else:
                    exhausted = True
                if not pending:
                    break
                images = [f.image for f in pending]
                indices = [f.index for f in pending]
                t0 = time.perf_counter()
                dets: list[Detections] = self.detector(images, indices)
                t1 = time.perf_counter()
                times.detect += t1 - t0
                feats: list[np.ndarray | None] = [None] * len(pending)
                if self.embedder is not None:  # motion-only runs report no embed stage
                    feats = self._embed(images, dets, wants_features)
                    times.embed += time.perf_counter() - t1
                if not put((pending, dets, feats)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the tracking thread
            put(exc)
        finally:
            put(_END)

    def run(self, source: FrameSource, tracker, max_frames: int | None = None, video: VideoWriter | None = None,
            show_progress: bool = True) -> RunResult:
        result = RunResult(TrackCollector())
        stop = threading.Event()
        out: queue.Queue = queue.Queue(maxsize=2)

        def frames():
            for n, frame in enumerate(source):
                if max_frames is not None and n >= max_frames:
                    return
                yield frame

        worker = threading.Thread(target=self._model_worker, args=(frames(), source.info.live, out, stop,
                                                                   result.times, tracker.wants_features),
                                  name="mot-reid-models",
                                  daemon=True)
        total = source.info.frame_count
        if max_frames is not None and total is not None:
            total = min(total, max_frames)
        bar = progress(total=total, desc="tracking", unit="frame", disable=None if show_progress else True)
        start = time.perf_counter()
        with sigterm_as_interrupt():
            try:
                worker.start()
                while True:
                    item = out.get()
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    self._track_batch(item, tracker, result, video)
                    bar.update(len(item[0]))
                    bar.set_postfix_str(f"{result.frames / max(time.perf_counter() - start, 1e-9):.1f} fps")
            except KeyboardInterrupt:
                result.complete, result.stopped_by = False, "interrupt"
                logger.warning("interrupted after %d frames", result.frames)
            except SourceError as exc:
                result.complete, result.stopped_by = False, "source-error"
                logger.error("%s; stopping with the %d frames tracked so far", exc, result.frames)
            finally:
                stop.set()
                source.close()
                worker.join(timeout=10)
                bar.close()
        result.seconds = time.perf_counter() - start
        result.times.decode = source.decode_seconds
        return result

    @staticmethod
    def _track_batch(item, tracker, result: RunResult, video: VideoWriter | None) -> None:
        pending, dets, feats = item
        for frame, det, feat in zip(pending, dets, feats, strict=True):
            t0 = time.perf_counter()
            features = feat if feat is not None and len(det) else None
            tracks = tracker.update(det.xyxy, det.score, classes=det.cls, features=features, frame=frame.image)
            t1 = time.perf_counter()
            result.collector.add(frame.index, tracks.track_id, tracks.xyxy, tracks.score, tracks.det_index)
            if video is not None:
                video.write(frame.image, tracks.track_id, tracks.xyxy)
            result.times.track += t1 - t0
            result.times.write += time.perf_counter() - t1
            result.frames += 1
            result.last_frame = frame.index
