"""MOT evaluation in two separate steps: produce result rows per sequence, then score result files.

`track_detections` turns per-frame detections (and optional appearance features) into MOT result
rows with the `trackers` package; `public_detection_results` feeds it a sequence's det/det.txt.
`setup_worker` and `sequence_job` are the same per-sequence step for `mot_reid.engine.run_jobs`, so many
sequences are tracked in parallel (local processes or Ray) exactly as one after the other.
`score_results` scores result files from ANY producer with TrackEval (MotChallenge2DBox, HOTA,
CLEAR, Identity): MOT15 rules for MOT15 sequences (no classes), MOT17 rules otherwise
(tracker boxes matched to distractor gt are removed, only pedestrians count).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from mot_reid.errors import UserError
from mot_reid.mot_data import Sequence, check_gt, read_detections, read_mot_rows
from trackers import DeepSort, TrackerConfig
from trackers.boxes import xyxy_to_mot

METRIC_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")
Detections = Mapping[int, tuple[np.ndarray, np.ndarray]]  # frame -> (xyxy (N,4), score (N,))
FeatureSource = Callable[[int, np.ndarray], np.ndarray | None]  # (frame, xyxy) -> (N,D) features or None


def track_detections(seq: Sequence, cfg: TrackerConfig, detections: Detections,
                     features: FeatureSource | None = None) -> np.ndarray:
    """Run a fresh tracker over frames 1..num_frames; rows (R,10) `frame,id,x,y,w,h,score,-1,-1,-1`."""
    tracker = DeepSort(cfg, frame_rate=seq.frame_rate)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    rows = []
    for frame in range(1, seq.num_frames + 1):
        xyxy, score = detections.get(frame, empty)
        feats = features(frame, xyxy) if features is not None else None
        out = tracker.update(xyxy, score, features=feats)
        if len(out):
            tlwh = xyxy_to_mot(out.xyxy)
            block = np.full((len(out), 10), -1.0)
            block[:, 0] = frame
            block[:, 1] = out.track_id
            block[:, 2:6] = tlwh
            block[:, 6] = out.score
            rows.append(block)
    return np.concatenate(rows) if rows else np.zeros((0, 10))


def public_detection_results(seq: Sequence, cfg: TrackerConfig) -> np.ndarray:
    """Motion-only tracking of the sequence's own det/det.txt."""
    if seq.det_path is None:
        raise UserError(f"sequence {seq.name} has no det/det.txt (needed for --detections public)")
    dets = read_detections(seq.det_path, seq.num_frames, seq.seq_length)
    return track_detections(seq, cfg, dets)


def score_results(sequences: list[Sequence], result_files: Mapping[str, str | Path]) -> dict[str, dict[str, float]]:
    """Score one result file per sequence: `{"SEQ": {"HOTA": .., ...}, "COMBINED": {...}}` in percent.

    Sequences are grouped by benchmark rules (MOT15 vs MOT17) for TrackEval, and the per-sequence
    results of all groups are combined with TrackEval's own `combine_sequences`.
    """
    import trackeval

    metrics = [trackeval.metrics.HOTA({"PRINT_CONFIG": False}), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    for seq in sequences:
        check_gt(seq)
        if seq.name not in result_files:
            raise UserError(f"no result file given for sequence {seq.name}")
        _check_results(seq, Path(result_files[seq.name]))
    per_seq: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mot-reid-eval-") as tmp:
        for benchmark in ("MOT15", "MOT17"):
            group = [s for s in sequences if s.mot15 == (benchmark == "MOT15")]
            if group:
                folder = Path(tmp) / benchmark
                per_seq.update(_run_trackeval(trackeval, metrics, group, result_files, benchmark, folder))
    combined = {m.get_name(): m.combine_sequences({s: r[m.get_name()] for s, r in per_seq.items()}) for m in metrics}
    out = {name: _summary(res) for name, res in per_seq.items()}
    out["COMBINED"] = _summary(combined)
    return out


def format_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    """One row per sequence plus COMBINED, fixed-width columns."""
    width = max(len(name) for name in scores) if scores else 8
    lines = [f"{'sequence':<{width}}  " + "  ".join(f"{k:>6}" for k in METRIC_KEYS)]
    for name, row in scores.items():
        cells = [f"{int(row[k]):>6d}" if k == "IDSW" else f"{row[k]:>6.1f}" for k in METRIC_KEYS]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def _check_results(seq: Sequence, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"result file not found: {path}")
    rows = read_mot_rows(path, min_columns=7)
    if len(rows) and (rows[:, 0].min() < 1 or rows[:, 0].max() > seq.num_frames):
        raise UserError(f"{path}: result rows for frames outside 1..{seq.num_frames} of {seq.name}")
    if len(rows):
        frame_ids = rows[:, 0] * (rows[:, 1].max() + 1) + rows[:, 1]
        if len(np.unique(frame_ids)) != len(frame_ids):
            raise UserError(f"{path}: a track id appears twice in one frame")


def _run_trackeval(trackeval, metrics, group: list[Sequence], result_files, benchmark: str, root: Path) -> dict:
    """TrackEval on a folder laid out the way MotChallenge2DBox expects (SKIP_SPLIT_FOL layout)."""
    tracker = "mot-reid"
    for seq in group:
        (root / "gt" / seq.name / "gt").mkdir(parents=True)
        shutil.copyfile(seq.gt_path, root / "gt" / seq.name / "gt" / "gt.txt")
        (root / "trackers" / tracker / "data").mkdir(parents=True, exist_ok=True)
        # TrackEval reads the class from column 8; producers may leave -1 there, so write it as 1.
        rows = read_mot_rows(result_files[seq.name], min_columns=7)
        rows = np.concatenate([rows[:, :7], np.ones((len(rows), 1))], axis=1) if len(rows) else rows
        text = "".join(f"{int(r[0])},{int(r[1])},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},1\n" for r in rows)
        (root / "trackers" / tracker / "data" / f"{seq.name}.txt").write_text(text)
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"), "OUTPUT_FOLDER": str(root / "out"),
        "TRACKERS_TO_EVAL": [tracker], "BENCHMARK": benchmark, "SPLIT_TO_EVAL": "train", "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": {s.name: s.num_frames for s in group}, "PRINT_CONFIG": False,
    })
    evaluator = trackeval.Evaluator({
        "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_ONLY_COMBINED": True, "PRINT_CONFIG": False,
        "TIME_PROGRESS": False, "DISPLAY_LESS_PROGRESS": True, "OUTPUT_SUMMARY": False, "OUTPUT_EMPTY_CLASSES": False,
        "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None, "BREAK_ON_ERROR": True,
    })
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints progress; stdout is for results
            results, _ = evaluator.evaluate([dataset], metrics)
    except trackeval.utils.TrackEvalException as exc:
        raise UserError(f"TrackEval: {exc}") from None
    per_seq = results["MotChallenge2DBox"][tracker]
    return {s.name: per_seq[s.name]["pedestrian"] for s in group}


def _summary(res: Mapping[str, Mapping]) -> dict[str, float]:
    hota, clear, ident = res["HOTA"], res["CLEAR"], res["Identity"]
    return {
        "HOTA": 100 * float(np.mean(hota["HOTA"])),
        "DetA": 100 * float(np.mean(hota["DetA"])),
        "AssA": 100 * float(np.mean(hota["AssA"])),
        "MOTA": 100 * float(clear["MOTA"]),
        "IDF1": 100 * float(ident["IDF1"]),
        "IDSW": int(clear["IDSW"]),
    }


def pipeline_results(seq: Sequence, cfg: TrackerConfig, pipeline, public: bool) -> np.ndarray:
    """Rows from the video pipeline (`mot_reid.pipeline.Pipeline`): its detector, or the sequence's
    det/det.txt when `public`, plus its ReID embedder, over the sequence's img1/ or video."""
    from mot_reid.detection import FileDetections
    from mot_reid.pipeline import Pipeline
    from mot_reid.sources import open_source

    if public:
        if seq.det_path is None:
            raise UserError(f"sequence {seq.name} has no det/det.txt (needed for --detections public)")
        # This sequence's detections with the shared embedder; the caller's pipeline stays as it was.
        pipeline = Pipeline(FileDetections(str(seq.det_path)), pipeline.embedder, pipeline.device, batch=pipeline.batch)
    source = open_source(str(seq.img_dir or seq.video or seq.path), fps=seq.frame_rate)
    result = pipeline.run(source, DeepSort(cfg, frame_rate=seq.frame_rate), max_frames=seq.num_frames,
                          show_progress=False)
    if result.stopped_by == "interrupt":
        raise KeyboardInterrupt  # the pipeline turned Ctrl-C/SIGTERM into a clean stop; eval ends (exit 130)
    if not result.complete:
        raise UserError(f"tracking {seq.name} stopped early ({result.stopped_by})")
    return np.asarray(result.collector.mot_rows(), dtype=np.float64).reshape(-1, 10)


def setup_worker(cfg: TrackerConfig, pipeline_pairs: list[str] | None, public: bool) -> tuple:
    """Per worker, once: the tracker config and, when the run reads frames, the `track` pipeline's models."""
    pipeline = None
    if pipeline_pairs is not None:
        from mot_reid import config
        from mot_reid.pipeline_config import PipelineConfig
        from mot_reid.track_job import build_models

        pipeline = build_models(config.load(PipelineConfig, None, pipeline_pairs)).pipeline
    return cfg, pipeline, public


def sequence_job(state: tuple, seq: Sequence) -> tuple[np.ndarray | None, str | None]:
    """One sequence's result rows, or its one-line error (returned, so workers on any engine report it alike)."""
    cfg, pipeline, public = state
    try:
        if pipeline is None:
            return public_detection_results(seq, cfg), None
        return pipeline_results(seq, cfg, pipeline, public=public), None
    except UserError as exc:
        return None, str(exc)
