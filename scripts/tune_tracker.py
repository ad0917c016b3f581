"""Tracker tuning: leave-one-sequence-out selection of the motion-only config, and runs on cached embeddings.

    python scripts/tune_tracker.py loso SEQ_DIR_OR_ROOT... [--search motion|motion_yolo|appearance] [--tag public]
        [--detections DIR] [--no-write]
    python scripts/tune_tracker.py cache SEQ_DIR --reid WEIGHTS [--detections DET_TXT] [--tag public]
    python scripts/tune_tracker.py run SEQ_DIR... --tracker deepsort [--tag public] [--set k=v ...]
    python scripts/tune_tracker.py compare SEQ_DIR --reid WEIGHTS [--frames 40]
    python scripts/tune_tracker.py detect SEQ_DIR --detector yolov8n.pt --conf 0.1 --imgsz 640 --out DET_TXT

`loso` tracks every sequence's det/det.txt motion-only with every candidate of MOTION_GRID (plus the
deepsort reference), then, for each sequence in turn, picks the candidate with the best mean HOTA on
the OTHER sequences and reports that pick's score on the held-out one: the table in BENCHMARKS.md
(section tune_tracker) shows only held-out scores, so a setting that fits one clip and hurts the rest
cannot look good there. The candidate best on all sequences is the one `configs/tracker/motion.yaml` ships.
`--search motion_yolo --detections DIR` does the same on YOLO boxes (DIR/<SEQ>.txt, written by `detect`) for
the score thresholds of `configs/tracker/motion_yolo.yaml`: YOLO's person scores sit lower than Faster R-CNN's.
`--search appearance` does the same for the `mot-reid` config on `cache`d OSNet features (sequences with frames).

`cache` writes /tmp/mot-reid-cache/<SEQ>-<tag>.npz (frame, xyxy, score, feature per detection row),
using the pipeline's own batched embedder. `run` feeds the cached rows to a fresh tracker per sequence
and scores the result with TrackEval (about a second per sequence). `compare` measures, per box, the
cosine similarity between the pipeline embedder's features and features of torchreid/BoxMOT-style
crops (box clipped to the image, cut out, cv2 bilinear resize to 256x128, RGB, ImageNet normalised):
the preprocessing the peer trackers in PEERS.md were fed. `detect` runs the pipeline's YOLO detector
once over a sequence and writes its boxes as a MOT det.txt (then `cache --detections DET_TXT`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

CACHE = Path(tempfile.gettempdir()) / "mot-reid-cache"


def _frames(seq, limit=None):
    from mot_reid.sources import open_source

    source = open_source(str(seq.img_dir or seq.video or seq.path), fps=seq.frame_rate)
    try:
        for n, frame in enumerate(source):
            if n >= (limit or seq.num_frames):
                return
            yield frame.index, frame.image
    finally:
        source.close()


def cache_path(seq_name: str, tag: str) -> Path:
    return CACHE / f"{seq_name}-{tag}.npz"


def cache(seq_dir: str, reid: str, det_txt: str | None, tag: str, reference: bool = False) -> Path:
    import torch

    from mot_reid.embedding import load_path
    from mot_reid.mot_data import load_sequence, read_detections

    seq = load_sequence(seq_dir)
    dets = read_detections(det_txt or seq.det_path, seq.num_frames, None if det_txt else seq.seq_length)
    embedder = load_path(reid, "cpu")
    frames, xyxy, score, feats = [], [], [], []
    for index, image in _frames(seq):
        if index not in dets:
            continue
        boxes, scores = dets[index]
        if reference:
            f = _reference_features(embedder.extract, image, boxes)
        else:
            f = embedder(torch.from_numpy(image[None]), [boxes])[0]
        frames.append(np.full(len(boxes), index))
        xyxy.append(boxes)
        score.append(scores)
        feats.append(f)
    CACHE.mkdir(exist_ok=True)
    out = cache_path(seq.name, tag)
    np.savez(out, frame=np.concatenate(frames), xyxy=np.concatenate(xyxy), score=np.concatenate(score),
             feature=np.concatenate(feats))
    print(f"{out}: {sum(len(f) for f in frames)} detections")
    return out


def load_cache(seq_name: str, tag: str):
    data = np.load(cache_path(seq_name, tag))
    frames = data["frame"]
    by_frame = {}
    for f in np.unique(frames):
        m = frames == f
        by_frame[int(f)] = (data["xyxy"][m], data["score"][m], data["feature"][m])
    return by_frame


def run(seq_dirs: list[str], tracker: str, tag: str, overrides: list[str], motion_only: bool = False) -> dict:
    from mot_reid import config
    from mot_reid.mot_data import load_sequence, write_mot_results
    from mot_reid.mot_eval import format_table, score_results, track_detections
    from trackers import TrackerConfig

    cfg = config.load(TrackerConfig, config.resolve_config_path(tracker, "tracker"), overrides)
    seqs = [load_sequence(s) for s in seq_dirs]
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seq in seqs:
            cached = load_cache(seq.name, tag)
            dets = {f: (v[0], v[1]) for f, v in cached.items()}
            feats = None if motion_only else (lambda frame, xyxy, c=cached: c[frame][2] if frame in c else None)
            rows = track_detections(seq, cfg, dets, feats)
            files[seq.name] = Path(tmp) / f"{seq.name}.txt"
            write_mot_results(files[seq.name], rows)
        scores = score_results(seqs, files)
    print(format_table(scores))
    return scores


# Candidate grids: every combination of a grid's values, on top of its base config plus its fixed keys.
# motion: deepsort.yaml with ByteTrack's second association on (low-score boxes extend existing tracks
# only; its low_score_threshold stays ByteTrack's 0.1). appearance: mot-reid.yaml, on cached OSNet features.
# motion_yolo: motion.yaml's switches kept (chosen on seven sequences), only its score thresholds re-chosen on
# YOLO boxes, of which only the two sequences with frames exist: few knobs, so two sequences can choose them.
MOTION_GRID = {
    "min_confidence": [0.6, 0.7, 0.8, 0.9],  # boxes below start no track and go to the second association
    "direction_weight": [0.0, 0.1],  # OC-SORT direction consistency
    "reupdate_after_gap": [False, True],  # OC-SORT re-update after a gap
    "recovery": [False, True],  # OC-SORT recovery by last observed box
    "report_coasting_frames": [1, 0],  # report a track on the frame it is first missed, or only when matched
}
MOTION_YOLO_GRID = {
    "min_confidence": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8],  # the confident/weak split
    "low_score_threshold": [0.1, 0.2, 0.3],  # the weakest box the second association may use
    "second_max_iou_distance": [0.3, 0.5, 0.7],  # how far a weak box may sit from the track's prediction
}
APPEARANCE_GRID = {
    "min_confidence": [0.4, 0.8],
    "second_association": [False, True],
    "max_cosine_distance": [0.2, 0.3],
    "matching": ["cascade", "global"],
    "appearance": ["gallery", "ema"],
}
SEARCHES = {  # name: (base config, fixed overrides, grid, shipped config it chooses, BENCHMARKS section)
    "motion": ("deepsort", ["second_association=true"], MOTION_GRID, "motion", "tune_tracker"),
    "motion_yolo": ("motion", [], MOTION_YOLO_GRID, "motion_yolo", "tune_tracker_yolo"),
    "appearance": ("mot-reid", [], APPEARANCE_GRID, "mot-reid", "tune_tracker_appearance"),
}


def candidates(search: str) -> dict[str, tuple[str, list[str]]]:
    """{label: (base config, overrides)}; a label names the grid values ("deepsort" = the reference)."""
    import itertools

    base, fixed, grid, _, _ = SEARCHES[search]
    out = {"deepsort": ("deepsort", [])}
    for values in itertools.product(*grid.values()):
        pairs = [f"{k}={str(v).lower()}" for k, v in zip(grid, values, strict=True)]
        out[" ".join(pairs)] = (base, fixed + pairs)
    return out


def loso(paths: list[str], write: bool, search: str = "motion", tag: str | None = None,
         detections: str | None = None) -> dict:
    """Leave-one-sequence-out over `search`'s candidates; `tag` names the feature cache for `appearance`;
    `detections` a folder of <SEQ>.txt det files used instead of each sequence's det/det.txt."""
    import os
    import time

    from mot_reid.mot_data import find_sequences, read_detections, write_mot_results
    from mot_reid.mot_eval import score_results, track_detections
    from mot_reid.tracker_config import load_tracker_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from scripts.bench_report import machine, update_section

    start = time.perf_counter()
    seqs = find_sequences(paths)
    names = [s.name for s in seqs]
    if search == "appearance":  # boxes and features as `cache` stored them
        cached = {s.name: load_cache(s.name, tag) for s in seqs}
        dets = {n: {f: v[:2] for f, v in c.items()} for n, c in cached.items()}
        feats = {n: (lambda frame, xyxy, c=c: c[frame][2] if frame in c else None) for n, c in cached.items()}
    else:
        files = {s.name: Path(detections) / f"{s.name}.txt" if detections else s.det_path for s in seqs}
        dets = {s.name: read_detections(files[s.name], s.num_frames, s.seq_length) for s in seqs}
        feats = dict.fromkeys(names)
    base, fixed, grid, shipped_name, section = SEARCHES[search]
    configs = candidates(search)
    scores = {}  # label -> score_results output
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, (cfg_base, overrides)) in enumerate(configs.items()):
            cfg = load_tracker_config(cfg_base, overrides)
            files = {s.name: write_mot_results(Path(tmp) / f"{s.name}.txt",
                                               track_detections(s, cfg, dets[s.name], feats[s.name])) for s in seqs}
            scores[label] = score_results(seqs, files)
            print(f"[{n + 1}/{len(configs)}] {label}: mean HOTA "
                  f"{np.mean([scores[label][s]['HOTA'] for s in names]):.2f}", flush=True)

    def best_on(subset):
        return max(configs, key=lambda c: np.mean([scores[c][s]["HOTA"] for s in subset]))

    held_out = {s: best_on([o for o in names if o != s]) for s in names}
    shipped = best_on(names)
    inputs = (f"the det files in `{detections}`" if detections else "public det/det.txt") \
        + (f", OSNet features cached as `{tag}`" if search == "appearance" else "")
    lines = [f"### Leave-one-sequence-out choice of the {search} config, {machine()}, load average "
             f"{os.getloadavg()[0]:.1f}, {time.perf_counter() - start:.0f} s for {len(configs)} candidates", "",
             "Each row: the candidate with the best mean HOTA on the other sequences, scored on this one "
             f"({inputs}, TrackEval MOT15 rules). Candidates: deepsort.yaml, and {base}.yaml"
             + (f" + `{' '.join(fixed)}`" if fixed else "") + " with every combination of "
             + ", ".join(f"`{k}` {v}" for k, v in grid.items()) + ".", "",
             "| held-out sequence | chosen on the others | HOTA | AssA | IDF1 | IDSW | deepsort HOTA | change |",
             "|---|---|---|---|---|---|---|---|"]
    for s in names:
        r, ref = scores[held_out[s]][s], scores["deepsort"][s]
        lines.append(f"| {s} | `{held_out[s]}` | {r['HOTA']:.1f} | {r['AssA']:.1f} | {r['IDF1']:.1f} | {r['IDSW']} | "
                     f"{ref['HOTA']:.1f} | {r['HOTA'] - ref['HOTA']:+.1f} |")
    mean = {k: np.mean([scores[held_out[s]][s][k] for s in names]) for k in ("HOTA", "AssA", "IDF1")}
    ref_mean = np.mean([scores["deepsort"][s]["HOTA"] for s in names])
    lines.append(f"| **mean** | | {mean['HOTA']:.1f} | {mean['AssA']:.1f} | {mean['IDF1']:.1f} | "
                 f"{sum(scores[held_out[s]][s]['IDSW'] for s in names)} | {ref_mean:.1f} | "
                 f"{mean['HOTA'] - ref_mean:+.1f} |")
    same = load_tracker_config(shipped_name) == load_tracker_config(*configs[shipped])
    lines += ["", f"Chosen on all {len(names)}: `{shipped}`; `configs/tracker/{shipped_name}.yaml` "
              + ("is this config." if same else "is NOT this config."), ""]
    if shipped != "deepsort":
        lines += flip_table(scores, shipped, names, grid)
    command = f"python scripts/tune_tracker.py loso {' '.join(paths)}"
    if detections:  # motion_yolo, the only search that reads them
        command += (f" --search {search} --detections {detections}` after, per sequence, "
                    f"`python scripts/tune_tracker.py detect SEQ --detector yolov8n.pt --conf 0.1 "
                    f"--out {detections}/SEQ.txt")
    if search == "appearance":
        command += f" --search appearance --tag {tag}` after `python scripts/tune_tracker.py cache SEQ --reid OSNET.pth"
    lines += ["", f"Reproduce: `{command}`"]
    markdown = "\n".join(lines)
    print(markdown)
    if write:
        update_section(section, markdown)
    return {"scores": scores, "held_out": held_out, "shipped": shipped}


def flip_table(scores: dict, shipped: str, names: list[str], grid: dict) -> list[str]:
    """Markdown rows: HOTA change per sequence when one key of the shipped candidate takes another grid value."""
    chosen = dict(pair.split("=") for pair in shipped.split())
    lines = [f"What each setting does to the chosen config (HOTA change on all {len(names)}, in-sample: it "
             "explains the choice, the held-out table above measures it):", "",
             "| changed to | mean | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, values in grid.items():
        for value in values:
            if str(value).lower() == chosen[key]:
                continue
            other = " ".join(f"{k}={str(value).lower() if k == key else v}" for k, v in chosen.items())
            delta = [scores[other][n]["HOTA"] - scores[shipped][n]["HOTA"] for n in names]
            lines.append(f"| `{key}={str(value).lower()}` | {np.mean(delta):+.2f} | "
                         + " | ".join(f"{d:+.1f}" for d in delta) + " |")
    return lines


def _reference_features(model, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Peer-style crops, one box at a time (a reference for `compare` only, never the product path)."""
    import cv2
    import torch

    from mot_reid.reid.osnet import IMAGENET_MEAN, IMAGENET_STD

    h, w = image.shape[:2]
    crops = []
    for x1, y1, x2, y2 in boxes:
        x1, x2 = int(np.clip(x1, 0, w - 1)), int(np.clip(x2, 0, w - 1))
        y1, y2 = int(np.clip(y1, 0, h - 1)), int(np.clip(y2, 0, h - 1))
        crop = cv2.resize(image[y1:y2, x1:x2], (128, 256), interpolation=cv2.INTER_LINEAR)
        crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    x = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        f = model(x)
    return torch.nn.functional.normalize(f, dim=1).numpy()


def compare(seq_dir: str, reid: str, frames: int) -> np.ndarray:
    import torch

    from mot_reid.embedding import load_path
    from mot_reid.mot_data import load_sequence, read_detections

    seq = load_sequence(seq_dir)
    dets = read_detections(seq.det_path, seq.num_frames, seq.seq_length)
    embedder = load_path(reid, "cpu")
    sims, outside = [], []
    for index, image in _frames(seq, frames):
        if index not in dets:
            continue
        boxes = dets[index][0]
        ours = embedder(torch.from_numpy(image[None]), [boxes])[0]
        ref = _reference_features(embedder.extract, image, boxes)
        sims.append((ours * ref).sum(1))
        h, w = image.shape[:2]
        outside.append((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > w) | (boxes[:, 3] > h))
    sims, outside = np.concatenate(sims), np.concatenate(outside)
    print(f"{seq.name}: {len(sims)} boxes, cosine(ours, reference) mean {sims.mean():.4f} min {sims.min():.4f}; "
          f"boxes past the image {outside.sum()} (mean {sims[outside].mean() if outside.any() else float('nan'):.4f})")
    return sims


def detect(seq_dir: str, weights: str, conf: float, imgsz: int, out: str) -> None:
    from mot_reid.detection import DetectorSettings, YoloDetector
    from mot_reid.mot_data import load_sequence, write_mot_results
    from trackers.boxes import xyxy_to_mot

    seq = load_sequence(seq_dir)
    detector = YoloDetector(weights, "cpu", DetectorSettings(conf=conf, iou=0.7, imgsz=imgsz, classes=[0], half=False))
    rows = []
    for index, image in _frames(seq):
        det = detector([image], [index])[0]
        for box, score in zip(xyxy_to_mot(det.xyxy), det.score, strict=True):
            rows.append([index, -1, *box, score, -1, -1, -1])
    write_mot_results(out, rows)
    print(f"{out}: {len(rows)} detections")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("loso")
    p.add_argument("paths", nargs="+")
    p.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    p.add_argument("--search", choices=sorted(SEARCHES), default="motion")
    p.add_argument("--tag", default="public", help="--search appearance: the feature cache to use")
    p.add_argument("--detections", default=None, metavar="DIR", help="DIR/<SEQ>.txt instead of each det/det.txt")
    p = sub.add_parser("cache")
    p.add_argument("seq")
    p.add_argument("--reid", required=True)
    p.add_argument("--detections", default=None, help="a det.txt instead of the sequence's own")
    p.add_argument("--tag", default="public")
    p.add_argument("--reference", action="store_true", help="peer-style per-box crops instead of the embedder")
    p = sub.add_parser("run")
    p.add_argument("seqs", nargs="+")
    p.add_argument("--tracker", default="deepsort")
    p.add_argument("--tag", default="public")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--motion-only", action="store_true")
    p = sub.add_parser("compare")
    p.add_argument("seq")
    p.add_argument("--reid", required=True)
    p.add_argument("--frames", type=int, default=40)
    p = sub.add_parser("detect")
    p.add_argument("seq")
    p.add_argument("--detector", required=True)
    p.add_argument("--conf", type=float, default=0.1)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "loso" and (args.search == "motion_yolo") != (args.detections is not None):
        parser.error("--search motion_yolo takes --detections DIR (YOLO boxes), and only it does: motion is chosen "
                     "on det/det.txt, appearance on cached boxes and features")
    if args.cmd == "loso":
        loso(args.paths, not args.no_write, args.search, args.tag, args.detections)
    elif args.cmd == "cache":
        cache(args.seq, args.reid, args.detections, args.tag, args.reference)
    elif args.cmd == "run":
        run(args.seqs, args.tracker, args.tag, args.overrides, args.motion_only)
    elif args.cmd == "detect":
        detect(args.seq, args.detector, args.conf, args.imgsz, args.out)
    else:
        compare(args.seq, args.reid, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
