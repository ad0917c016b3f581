"""`mot-reid batch SOURCES... --out-dir DIR`: track many videos or sequences, resumable, on local or Ray workers."""

from __future__ import annotations

import sys
from pathlib import Path

from mot_reid.commands import add_engine_arguments, add_set_argument, engine_options

HELP = "Track many videos/sequences (one folder each, manifest batch.json), resumable, local or Ray workers."


def add_arguments(parser) -> None:
    from mot_reid.commands.track import add_pipeline_options

    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="video files, folders of videos or MOT sequences, a sequence folder, "
                             "a .txt file of paths/URLs (one a line), or a glob ('clips/*.mp4')")
    parser.add_argument("--out-dir", type=Path, required=True, help="DIR/<name>/tracks.json per input, DIR/batch.json")
    add_pipeline_options(parser)
    parser.add_argument("--mot-txt", action="store_true", help="also write DIR/<name>/tracks.txt (MOT rows)")
    parser.add_argument("--save-video", action="store_true", help="also write DIR/<name>/tracks.mp4")
    add_set_argument(parser, "detector.batch=16 tracker.max_age=50")
    parser.add_argument("--force", action="store_true", help="redo inputs whose outputs are already complete")
    add_engine_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from mot_reid import config
    from mot_reid.batch import Job, Manifest, expand_sources, input_names, is_complete, setup_worker, track_job
    from mot_reid.commands.track import overrides_from_args
    from mot_reid.device import resolve_device
    from mot_reid.engine import INTERRUPTED, run_jobs
    from mot_reid.errors import UserError
    from mot_reid.log import logger, progress
    from mot_reid.pipeline_config import PipelineConfig
    from mot_reid.provenance import versions
    from mot_reid.signals import sigterm_as_interrupt
    from mot_reid.track_job import planned_tracker_name, split_overrides
    from mot_reid.tracker_config import load_tracker_config

    pipeline_pairs, tracker_pairs = split_overrides(overrides_from_args(args))
    path = config.resolve_config_path(args.config, "pipeline") if args.config else None
    cfg = config.load(PipelineConfig, path, pipeline_pairs)
    # A bad tracker name or key is the user's mistake once, not a failure of every input.
    load_tracker_config(planned_tracker_name(cfg), tracker_pairs)
    sources = expand_sources(args.sources)
    if not sources:
        raise UserError(f"no inputs in {' '.join(args.sources)}")
    resolve_device(cfg.device)  # a device that is not there is the user's mistake once, not every input's
    jobs = [Job(name, src, str(args.out_dir / name), tracker_pairs, args.mot_txt, args.save_video)
            for name, src in zip(input_names(sources), sources, strict=True)]
    todo = [j for j in jobs if args.force or not is_complete(j)]
    engine = engine_options(args, len(todo))
    header = {"config": config.to_dict(cfg), "tracker_overrides": tracker_pairs, "versions": versions(),
              "engine": args.engine, "workers": engine["workers"]}
    manifest = Manifest(args.out_dir, jobs, header)
    for j in jobs:
        if j not in todo:
            manifest.records[j.name] |= {"status": "skipped", "reason": "complete outputs from an earlier run"}
    manifest.write()
    logger.info("%d inputs: %d to track, %d already done; %s engine, %d workers", len(jobs), len(todo),
                len(jobs) - len(todo), args.engine, engine["workers"])
    bar = progress(total=len(todo), desc="batch", unit="input", disable=True if args.no_progress else None)
    interrupted = False
    try:
        with sigterm_as_interrupt():
            for _, record in run_jobs(setup_worker, (cfg,), track_job, todo, **engine):
                if record["status"] == INTERRUPTED:
                    raise KeyboardInterrupt
                manifest.update(record)
                if record["status"] == "failed":
                    logger.error("%s: %s", record["name"], record["reason"])
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        for j in todo:
            if manifest.records[j.name]["status"] == "pending":
                j.remove_leftovers()
    finally:
        bar.close()
    manifest.write(finished=not interrupted)
    counts = {s: sum(r["status"] == s for r in manifest.records.values())
              for s in ("done", "failed", "skipped", "pending")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; manifest {manifest.path}", file=sys.stderr)
    if interrupted:
        print("mot-reid batch: interrupted; finished outputs kept, re-run to resume", file=sys.stderr)
        return 130
    return 1 if counts["failed"] else 0
