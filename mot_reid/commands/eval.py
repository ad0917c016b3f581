"""`mot-reid eval`: track MOT Challenge sequences and score them with TrackEval."""

from __future__ import annotations

import time
from pathlib import Path

from mot_reid.commands import add_backend_argument, add_engine_arguments, add_set_argument, engine_options

HELP = "Run the tracker over MOT Challenge sequences and score it with TrackEval (HOTA, IDF1, MOTA)."


def add_arguments(parser) -> None:
    parser.add_argument("sequences", nargs="+", metavar="SEQ_OR_ROOT",
                        help="a sequence folder (with seqinfo.ini) or a folder of sequences, e.g. MOT17/train")
    parser.add_argument("--detections", choices=("public", "yolo"), default="public",
                        help="public: each sequence's det/det.txt (default); yolo: the video pipeline's detector")
    parser.add_argument("--tracker", default="auto", metavar="NAME|PATH",
                        help="tracker config: auto (mot-reid with --reid; without: motion, or motion_yolo on "
                             "--detections yolo), a name in configs/tracker (deepsort, strongsort, mot-reid, motion, "
                             "motion_yolo) or a YAML path")
    add_set_argument(parser, "max_age=60 max_cosine_distance=0.25 (tracker config keys)")
    parser.add_argument("--detector", default="auto", metavar="auto|hog|PATH",
                        help="--detections yolo: YOLO weights as in `mot-reid track --detector` (default auto)")
    parser.add_argument("--reid", default="none", metavar="none|auto|PATH",
                        help="appearance features from the track pipeline's embedder (default none: motion only)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda:N (pipeline runs)")
    add_backend_argument(parser)
    parser.add_argument("--conf", type=float, help="detector confidence for --detections yolo (default 0.25)")
    parser.add_argument("--imgsz", type=int, help="detector input size for --detections yolo (default 640)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the scores to this JSON file")
    parser.add_argument("--out-dir", type=Path, metavar="DIR",
                        help="where result files and the resolved config go (default runs/eval-<timestamp>)")
    add_engine_arguments(parser)


def run(args) -> int:
    from mot_reid import atomic, config
    from mot_reid.detection import detector_kind
    from mot_reid.engine import run_jobs
    from mot_reid.errors import UserError
    from mot_reid.log import logger, progress
    from mot_reid.mot_data import check_gt, find_sequences, require_frames, write_mot_results
    from mot_reid.mot_eval import format_table, score_results, sequence_job, setup_worker
    from mot_reid.provenance import versions
    from mot_reid.tracker_config import load_tracker_config, resolve_tracker_name

    kind = "file" if args.detections == "public" else detector_kind(args.detector)
    tracker_name = resolve_tracker_name(args.tracker, with_appearance=args.reid != "none", detector_kind=kind)
    cfg = load_tracker_config(tracker_name, args.overrides)
    sequences = find_sequences(args.sequences)
    # Only motion-only tracking of det.txt boxes can skip the frames; CMC reads them through the pipeline too.
    needs = [why for why, asked in (("--detections yolo", args.detections == "yolo"),
                                    (f"--reid {args.reid}", args.reid != "none"), (f"cmc={cfg.cmc}", cfg.cmc != "none"))
             if asked]
    if needs:
        require_frames(sequences, " and ".join(needs))
    engine = engine_options(args, len(sequences))
    out_dir = args.out_dir or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    data_dir = out_dir / "data"
    # Unscorable ground truth and unwritable outputs are refused before any tracking or any file is written.
    for seq in sequences:
        check_gt(seq)
    atomic.check_writable(out_dir / "eval.json", args.json)
    result_files = {}
    setup_args = (cfg, _pipeline_pairs(args) if needs else None, args.detections == "public")
    with progress(total=len(sequences), desc="tracking", unit="seq") as bar:
        for i, (rows, error) in run_jobs(setup_worker, setup_args, sequence_job, sequences, **engine):
            if error is not None:
                raise UserError(error)
            result_files[sequences[i].name] = write_mot_results(data_dir / f"{sequences[i].name}.txt", rows)
            bar.update(1)
    config.save(cfg, out_dir / "tracker.yaml")
    scores = score_results(sequences, result_files)
    print(format_table(scores))
    report = {"scores": scores, "tracker": config.to_dict(cfg), "tracker_source": str(tracker_name),
              "detections": args.detections, "detector": args.detector, "reid": args.reid, "backend": args.backend,
              "sequences": {s.name: str(s.path) for s in sequences},
              "versions": versions()}
    atomic.write_json(out_dir / "eval.json", report)
    if args.json:
        atomic.write_json(args.json, scores)
    logger.info("results, tracker.yaml and eval.json in %s", out_dir)
    return 0


def _pipeline_pairs(args) -> list[str]:
    """The `mot-reid track` pipeline config for the detector + embedder each worker builds once."""
    from mot_reid import config
    from mot_reid.pipeline_config import PipelineConfig

    pairs = [f"detector.weights={args.detector if args.detections == 'yolo' else 'hog'}",
             f"embedder.weights={args.reid}", f"device={args.device}", f"backend={args.backend or 'auto'}"]
    pairs += [f"detector.{k}={v}" for k, v in (("conf", args.conf), ("imgsz", args.imgsz)) if v is not None]
    config.load(PipelineConfig, None, pairs)  # a bad value is one error here, before any worker starts
    return pairs
