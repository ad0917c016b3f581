"""Motion-only trackers side by side on the same detections; writes BENCHMARKS.md#peers_motion (public det.txt)
or, with --detections, #peers_motion_yolo.

    python scripts/peers_motion.py SEQ_OR_ROOT... [--boxmot-python /tmp/boxmot/bin/python] [--no-write]
        [--detections DIR]

Every tracker is fed the same boxes and scores per frame (each sequence's det/det.txt, or DIR/<SEQ>.txt as
`scripts/tune_tracker.py detect` writes YOLO's), and a black image of the sequence's size where a tracker
wants a frame; its output is scored by the same TrackEval path
as `mot-reid eval` (`mot_reid.mot_eval.score_results`). Rows: mot-reid `deepsort` (the reference),
mot-reid `motion` (what `--tracker auto` picks without ReID on det.txt boxes) and, with --detections,
`motion_yolo` (what it picks on boxes of mot-reid's YOLO detector), Ultralytics BYTETracker and BOTSORT
(its shipped YAMLs, camera-motion compensation off: there are no frames to estimate it on; this
Ultralytics takes no frame rate), and
BoxMOT 25 ByteTrack and OC-SORT (their shipped defaults, frame rate set per sequence).

BoxMOT is an optional dev dependency with its own torch/numpy pins, so it runs in its own
interpreter (`--boxmot-python`, default this one): this script re-invokes itself there with
`--boxmot-worker`, handing boxes over in an .npz and taking MOT rows back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BOXMOT = {"BoxMOT ByteTrack": "bytetrack", "BoxMOT OC-SORT": "ocsort"}
INSTALL = "python3 -m venv /tmp/boxmot && /tmp/boxmot/bin/pip install 'boxmot==25.*'"


def boxmot_worker(name: str, npz_in: str, npz_out: str) -> None:
    """Runs inside the BoxMOT interpreter: imports nothing from this repository."""
    from boxmot.trackers.factory import create_tracker
    from boxmot.trackers.specs import TrackerSpec

    data = np.load(npz_in)
    frame, xyxy, score = data["frame"], data["xyxy"], data["score"]
    options = (("frame_rate", int(round(float(data["fps"])))),) if name == "bytetrack" else ()
    tracker = create_tracker(TrackerSpec(name=name, options=options))
    image = np.zeros((int(data["height"]), int(data["width"]), 3), np.uint8)
    rows = []
    for f in range(1, int(data["num_frames"]) + 1):
        m = frame == f
        dets = np.column_stack([xyxy[m], score[m], np.zeros(m.sum())]).astype(np.float32)
        out = tracker.update(dets, image)
        # BoxMOT numbers tracks from 0; MOT ids must be positive.
        rows.extend([f, int(o[4]) + 1, *o[:4], o[5]] for o in out)
    np.savez(npz_out, rows=np.asarray(rows, np.float64).reshape(-1, 7))


def run_boxmot(python: str, name: str, seq, dets) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        frame = np.concatenate([np.full(len(v[1]), f) for f, v in dets.items()])
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, frame=frame, xyxy=np.concatenate([v[0] for v in dets.values()]),
                 score=np.concatenate([v[1] for v in dets.values()]), fps=seq.frame_rate,
                 width=seq.width, height=seq.height, num_frames=seq.num_frames)
        env = {**os.environ, "PYTHONPATH": ""}  # BoxMOT's interpreter must not pick up this repository's packages
        subprocess.run([python, __file__, "--boxmot-worker", name, str(src), str(dst)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = np.load(dst)["rows"]
    return _mot_rows(rows[:, 0], rows[:, 1], rows[:, 2:6], rows[:, 6])


def run_ultralytics(kind: str, seq, dets) -> np.ndarray:
    from types import SimpleNamespace

    import yaml
    from ultralytics.cfg import ROOT as UL_ROOT
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker

    args = yaml.safe_load((UL_ROOT / "cfg" / "trackers" / f"{kind}.yaml").read_text())
    args["gmc_method"] = "none"  # no frames here to estimate camera motion on
    tracker = (BYTETracker if kind == "bytetrack" else BOTSORT)(SimpleNamespace(**args))
    image = np.zeros((seq.height, seq.width, 3), np.uint8)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    frames, ids, xyxy, score = [], [], [], []
    for f in range(1, seq.num_frames + 1):
        b, s = dets.get(f, empty)
        out = tracker.update(Boxes(np.column_stack([b, s, np.zeros(len(s))]), image.shape[:2]), image).reshape(-1, 8)
        frames.append(np.full(len(out), f))
        ids.append(out[:, 4])
        xyxy.append(out[:, :4])
        score.append(out[:, 5])
    return _mot_rows(np.concatenate(frames), np.concatenate(ids), np.concatenate(xyxy), np.concatenate(score))


def _mot_rows(frame, ids, xyxy, score) -> np.ndarray:
    from trackers.boxes import xyxy_to_mot

    rows = np.full((len(frame), 10), -1.0)
    rows[:, 0], rows[:, 1], rows[:, 2:6], rows[:, 6] = frame, ids, xyxy_to_mot(np.reshape(xyxy, (-1, 4))), score
    return rows


def has_boxmot(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import boxmot"], capture_output=True, env={**os.environ, "PYTHONPATH": ""})
    return probe.returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--boxmot-python", default=sys.executable, help="an interpreter with boxmot==25.* installed")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    parser.add_argument("--detections", metavar="DIR",
                        help="DIR/<SEQ>.txt (e.g. YOLO boxes) instead of each det/det.txt")
    parser.add_argument("--boxmot-worker", nargs=3, metavar=("NAME", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.boxmot_worker:
        boxmot_worker(*args.boxmot_worker)
        return 0
    if not args.paths:
        parser.error("give sequence folders or roots holding them")
    if not has_boxmot(args.boxmot_python):
        print(f"error: boxmot not importable by {args.boxmot_python}; install it with: {INSTALL} "
              "and pass --boxmot-python /tmp/boxmot/bin/python", file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT))
    from mot_reid.mot_data import find_sequences, read_detections, write_mot_results
    from mot_reid.mot_eval import score_results, track_detections
    from mot_reid.tracker_config import load_tracker_config
    from scripts.bench_report import update_section

    seqs = find_sequences(args.paths)
    files = {s.name: Path(args.detections) / f"{s.name}.txt" if args.detections else s.det_path for s in seqs}
    dets = {s.name: read_detections(files[s.name], s.num_frames, s.seq_length) for s in seqs}
    ours = ["deepsort", "motion"] + (["motion_yolo"] if args.detections else [])
    producers = {
        **{f"mot-reid {name}" + (" (reference)" if name == "deepsort" else ""):
           (lambda s, n=name: track_detections(s, load_tracker_config(n), dets[s.name])) for name in ours},
        "Ultralytics BYTETracker": lambda s: run_ultralytics("bytetrack", s, dets[s.name]),
        "Ultralytics BOTSORT": lambda s: run_ultralytics("botsort", s, dets[s.name]),
        **{label: (lambda s, n=name: run_boxmot(args.boxmot_python, n, s, dets[s.name]))
           for label, name in BOXMOT.items()},
    }
    scores, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, produce in producers.items():
            files, start = {}, time.perf_counter()
            for seq in seqs:
                files[seq.name] = Path(tmp) / f"{len(scores)}-{seq.name}.txt"
                write_mot_results(files[seq.name], produce(seq))
            seconds[label] = time.perf_counter() - start
            scores[label] = score_results(seqs, files)
            c = scores[label]["COMBINED"]
            print(f"{label:32s} COMBINED HOTA {c['HOTA']:.1f} AssA {c['AssA']:.1f} IDF1 {c['IDF1']:.1f} "
                  f"IDSW {c['IDSW']}  ({seconds[label]:.1f} s)", flush=True)
    markdown = table(scores, [s.name for s in seqs], seconds, args.paths, args.detections)
    print(markdown)
    if not args.no_write:
        update_section("peers_motion_yolo" if args.detections else "peers_motion", markdown)
    return 0


def table(scores, names, seconds, paths, detections=None) -> str:
    from scripts.bench_report import machine

    load = os.getloadavg()[0]
    boxes = f"detections in `{detections}`" if detections else "public detections (det/det.txt)"
    lines = [f"### Motion-only trackers on the same {boxes}, {machine()}, load average {load:.1f}", "",
             "HOTA / AssA / IDF1 / IDSW per sequence, TrackEval via mot_reid.mot_eval.score_results (MOT15 rules). "
             "Seconds = tracking all sequences (BoxMOT's include starting its interpreter).", "",
             "| sequence | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    for name in [*names, "COMBINED"]:
        cells = [f"{r[name]['HOTA']:.1f} / {r[name]['AssA']:.1f} / {r[name]['IDF1']:.1f} / {r[name]['IDSW']}"
                 for r in scores.values()]
        lines.append(f"| {'**COMBINED**' if name == 'COMBINED' else name} | " + " | ".join(cells) + " |")
    lines.append("| seconds | " + " | ".join(f"{seconds[k]:.1f}" for k in scores) + " |")
    option = f" --detections {detections}" if detections else ""
    lines += ["", f"Reproduce: `python scripts/peers_motion.py {' '.join(paths)}{option} "
              f"--boxmot-python /tmp/boxmot/bin/python` (BoxMOT: `{INSTALL}`)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
