"""Tracker tuning on cached inputs: embed every detection of a sequence once, then re-run only the tracker.

    python scripts/tune_tracker.py cache SEQ_DIR --reid WEIGHTS [--detections DET_TXT] [--tag public]
    python scripts/tune_tracker.py run SEQ_DIR... --tracker deepsort [--tag public] [--set k=v ...]
    python scripts/tune_tracker.py compare SEQ_DIR --reid WEIGHTS [--frames 40]
    python scripts/tune_tracker.py detect SEQ_DIR --detector yolov8n.pt --conf 0.1 --imgsz 640 --out DET_TXT

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
    if args.cmd == "cache":
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
