"""One `mot-reid track` job: config -> source, models and tracker -> run -> tracks.json (+ MOT txt, MP4)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mot_reid import atomic, config
from mot_reid.detection import DetectorSettings, HogDetector, build_detector, detector_kind
from mot_reid.device import resolve_device
from mot_reid.embedding import build_embedder
from mot_reid.log import logger
from mot_reid.mot_data import write_mot_results
from mot_reid.outputs import VideoWriter, tracks_document, write_tracks_json
from mot_reid.pipeline import Pipeline, RunResult
from mot_reid.pipeline_config import PipelineConfig
from mot_reid.provenance import versions
from mot_reid.sources import FrameSource, open_source
from mot_reid.tracker_config import load_tracker_config, resolve_tracker_name


@dataclass
class Models:
    pipeline: Pipeline
    detector_info: dict
    embedder_info: dict


def build_models(cfg: PipelineConfig) -> Models:
    """Detector and embedder as the config asks (auto choices resolved, fallbacks recorded)."""
    device = resolve_device(cfg.device)
    d = cfg.detector
    settings = DetectorSettings(conf=d.conf, iou=d.iou, imgsz=d.imgsz, classes=list(d.classes), half=d.half)
    detector = build_detector(d.weights, str(device), settings, detections=d.detections, backend=cfg.backend)
    if isinstance(detector, HogDetector):
        detector.upscale = d.hog_upscale
    embedder = build_embedder(cfg.embedder.weights, device, auto_checkpoint=cfg.embedder.auto_checkpoint,
                               backend=cfg.backend, feature=cfg.embedder.feature)
    if embedder is not None:
        embedder.max_crops = cfg.embedder.max_crops
    embedder_info = embedder.info if embedder is not None else {"kind": "none", "requested": cfg.embedder.weights}
    return Models(Pipeline(detector, embedder, device, batch=d.batch), dict(detector.info), dict(embedder_info))


def planned_tracker_name(cfg: PipelineConfig):
    """The tracker config `auto` will pick, as far as is known before any model loads (an `auto` embedder that
    finds no model leaves the run motion-only; `track` settles the name again from the loaded models)."""
    return resolve_tracker_name(cfg.tracker, with_appearance=cfg.embedder.weights != "none",
                                detector_kind=detector_kind(cfg.detector.weights, cfg.detector.detections))


def split_overrides(pairs: list[str] | None) -> tuple[list[str], list[str]]:
    """`--set` pairs for the pipeline config and, with the `tracker.` prefix removed, for the tracker."""
    pipeline, tracker = [], []
    for pair in pairs or []:
        (tracker.append(pair[len("tracker."):]) if pair.startswith("tracker.") else pipeline.append(pair))
    return pipeline, tracker


def track(source: str | FrameSource, cfg: PipelineConfig, out: str | Path, tracker_overrides: list[str] | None = None,
          mot_txt: str | Path | None = None, save_video: str | Path | None = None, show_progress: bool = True,
          models: Models | None = None, write_interrupted: bool = True) -> tuple[RunResult, dict]:
    """Track `source` and write the outputs; returns the run result and the tracks.json document.

    An interrupted run (Ctrl-C, SIGTERM) writes what it tracked, marked incomplete; with `write_interrupted=False`
    it writes nothing (`batch` redoes such an input on resume, so a partial file would only mislead)."""
    from trackers import DeepSort

    atomic.check_writable(out, mot_txt, save_video)  # before the work, not after it
    frames = source if isinstance(source, FrameSource) else open_source(source, queue_size=cfg.queue_size)
    # Refuse a bad tracker name or key before the slow model loading (auto is settled again once models exist).
    load_tracker_config(planned_tracker_name(cfg), tracker_overrides)
    models = models or build_models(cfg)
    tracker_name = resolve_tracker_name(cfg.tracker, with_appearance=models.pipeline.embedder is not None,
                                        detector_kind=models.detector_info["kind"])
    tracker_cfg = load_tracker_config(tracker_name, tracker_overrides)
    info = frames.info
    tracker = DeepSort(tracker_cfg, frame_rate=info.fps)
    logger.info("tracking %s (%s, %dx%d @ %.1f fps) with detector %s, embedder %s, device %s", info.path, info.kind,
                info.width, info.height, info.fps, models.detector_info["kind"], models.embedder_info["kind"],
                models.pipeline.device)
    video = VideoWriter(save_video, info.fps, (info.width, info.height), cfg.trail) if save_video else None
    keep = True
    try:
        result = models.pipeline.run(frames, tracker, max_frames=cfg.max_frames, video=video,
                                     show_progress=show_progress)
        keep = write_interrupted or result.stopped_by != "interrupt"
    finally:
        if video is not None:
            video.close(keep=keep)
    source_meta = {**info.to_dict(), "frames_read": result.frames, "frames_skipped": frames.skipped,
                   "dropped": frames.dropped}
    document = tracks_document(
        result.collector, source=source_meta, config=config.to_dict(cfg), versions=versions(),
        detector=models.detector_info, embedder=models.embedder_info,
        tracker={"name": str(tracker_name), "config": config.to_dict(tracker_cfg)},
        complete=result.complete, summary=result.summary(),
    )
    if not keep:
        logger.warning("interrupted after %d frames: no outputs written for %s", result.frames, info.path)
        return result, document
    if result.stopped_by == "interrupt":
        logger.warning("interrupted: writing the results of the %d frames tracked so far", result.frames)
    write_tracks_json(out, document)
    if mot_txt:
        write_mot_results(mot_txt, result.collector.mot_rows())
    if frames.skipped:
        logger.warning("%d corrupt frames were skipped", frames.skipped)
    logger.info("%s", result.summary_line())
    return result, document
