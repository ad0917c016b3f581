"""Cut a Market-1501-style ReID dataset out of MOT ground truth.

Identity = (sequence, track id). Camera = a time segment of the sequence (its annotated frame range
cut into `segments` equal parts): a query and its true gallery matches then come from different
segments, which the Market protocol requires (same pid AND camera are removed from the gallery).
Identities are split between train and test per sequence by a seeded shuffle, so the split is
the same on every run and adding a sequence does not reshuffle the others.

Output (written to a temporary folder beside `out`, renamed into place when complete):

    out/bounding_box_train/PPPP_cC_FFFFFF.jpg   train identities, all their crops
    out/query/PPPP_cC_FFFFFF.jpg                test identities seen in >= 2 segments: one crop per segment
    out/bounding_box_test/PPPP_cC_FFFFFF.jpg    all other crops of the test identities
    out/mot2reid.json                           settings, counts, pid -> sequence/track map, versions
    out/README.txt

PPPP is a global pid starting at 1 (0 is Market's distractor id), C the 1-based segment, FFFFFF
the MOT frame number. Crops keep pedestrians only (MOT16/17/20: class 1 with consider flag 1;
MOT15 has no classes), visible enough (MOT17 visibility column; MOT15 has none) and not too small
after clipping to the image.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mot_reid.atomic import write_json, write_text
from mot_reid.errors import UserError
from mot_reid.log import logger, progress
from mot_reid.mot_data import Sequence, find_sequences, read_mot_rows
from mot_reid.provenance import versions
from mot_reid.sources import open_source
from trackers import boxes

SPLITS = ("bounding_box_train", "query", "bounding_box_test")
# MOTChallenge ships each MOT17 sequence three times (one per public detector) with identical gt.
DETECTOR_SUFFIXES = ("-DPM", "-FRCNN", "-SDP")


@dataclass
class Mot2ReidConfig:
    segments: int = 8  # time segments per sequence = cameras (at most)
    # A query's nearest true match in another segment is at least half a segment away in time; segments
    # shorter than 2 x query_gap seconds are merged, and a sequence too short for two such segments gives
    # no queries (its test identities stay in the gallery as distractors): otherwise a query would be
    # matched by a near-copy of itself from the next frame, which any random network does.
    query_gap: float = 0.5
    test_fraction: float = 0.5  # share of each sequence's identities held out for query/gallery (0..1)
    min_visibility: float = 0.5  # MOT16/17/20 visibility column; also the share of the box inside the image
    min_height: int = 50  # pixels, after clipping to the image
    min_width: int = 16
    frame_step: int = 1  # keep every n-th frame (consecutive frames give near-duplicate crops)
    seed: int = 0
    jpeg_quality: int = 95


@dataclass
class Crop:
    seq: str
    track: int
    frame: int
    box: tuple[int, int, int, int]  # clipped 0-based x1, y1, x2, y2
    segment: int = 0  # 1-based
    pid: int = 0
    split: str = ""


def person_boxes(seq: Sequence, cfg: Mot2ReidConfig) -> list[Crop]:
    """The gt boxes of `seq` that become crops, clipped to the image."""
    if seq.gt_path is None:
        raise UserError(f"{seq.path}: no gt/gt.txt (mot2reid needs ground truth)")
    rows = read_mot_rows(seq.gt_path)
    keep = np.ones(len(rows), dtype=bool)
    if rows.shape[1] == 9:  # MOT16/17/20: frame,id,x,y,w,h,consider,class,visibility
        keep &= (rows[:, 6] == 1) & (rows[:, 7] == 1) & (rows[:, 8] >= cfg.min_visibility)
    elif rows.shape[1] >= 7:  # MOT15: frame,id,x,y,w,h,conf,wx,wy,wz — conf 0 rows are ignored
        keep &= rows[:, 6] != 0
    keep &= (rows[:, 0] - 1) % cfg.frame_step == 0
    width, height = seq.width, seq.height
    if width <= 0 or height <= 0:
        raise UserError(f"{seq.path}/seqinfo.ini gives no imWidth/imHeight (needed to clip boxes to the image)")
    crops = []
    xyxy = boxes.mot_to_xyxy(rows[keep, 2:6])
    for (frame, track, _, _, w, h), (x1, y1, x2, y2) in zip(rows[keep, :6], xyxy, strict=True):
        cx1, cy1 = max(0.0, x1), max(0.0, y1)
        cx2, cy2 = min(float(width), x2), min(float(height), y2)
        cw, ch = cx2 - cx1, cy2 - cy1
        if ch < cfg.min_height or cw < cfg.min_width or cw * ch < cfg.min_visibility * w * h:
            continue
        box = (int(round(cx1)), int(round(cy1)), int(round(cx2)), int(round(cy2)))
        crops.append(Crop(seq.name, int(track), int(frame), box))
    return crops


def num_segments(span: int, fps: float, cfg: Mot2ReidConfig) -> int:
    """Segments for a sequence of `span` annotated frames at `fps`: cfg.segments, fewer when a segment would
    last under 2 x query_gap seconds or hold under two kept frames."""
    by_time = int(span / fps / (2 * cfg.query_gap)) if cfg.query_gap > 0 else cfg.segments
    return max(1, min(cfg.segments, span // (2 * cfg.frame_step), by_time))


def assign(crops: list[Crop], seq_name: str, cfg: Mot2ReidConfig, first_pid: int, fps: float = 30.0) -> int:
    """Set segment, pid and split of one sequence's crops; return the next free pid."""
    if not crops:
        return first_pid
    frames = [c.frame for c in crops]
    lo, hi = min(frames), max(frames)
    span = hi - lo + 1
    segments = num_segments(span, fps, cfg)
    for c in crops:
        c.segment = min(segments, (c.frame - lo) * segments // span + 1)
    tracks = sorted({c.track for c in crops})
    pid_of = {t: first_pid + i for i, t in enumerate(tracks)}
    rng = np.random.default_rng([cfg.seed, zlib.crc32(seq_name.encode())])
    shuffled = [tracks[i] for i in rng.permutation(len(tracks))]
    num_test = int(round(len(tracks) * cfg.test_fraction))
    if len(tracks) >= 2:
        num_test = min(max(num_test, 1 if cfg.test_fraction > 0 else 0), len(tracks) - (cfg.test_fraction < 1))
    test = set(shuffled[:num_test])

    by_track: dict[int, list[Crop]] = {}
    for c in crops:
        c.pid = pid_of[c.track]
        by_track.setdefault(c.track, []).append(c)
    for track, items in by_track.items():
        if track not in test:
            for c in items:
                c.split = "bounding_box_train"
            continue
        per_segment: dict[int, list[Crop]] = {}
        for c in sorted(items, key=lambda c: c.frame):
            c.split = "bounding_box_test"
            per_segment.setdefault(c.segment, []).append(c)
        if len(per_segment) < 2:  # a query needs a true match in another segment
            continue
        # One query per segment, only from segments that keep a gallery crop (so every other segment still
        # holds a match for each query): the crop farthest in time from this identity's crops in other
        # segments, and only if that is at least query_gap seconds.
        for segment, seg_crops in per_segment.items():
            if len(seg_crops) < 2:
                continue
            others = np.array([c.frame for c in items if c.segment != segment])
            gaps = [int(np.abs(others - c.frame).min()) for c in seg_crops]
            best = int(np.argmax(gaps))
            if gaps[best] >= cfg.query_gap * fps:
                seg_crops[best].split = "query"
    return first_pid + len(tracks)


def _dedupe_detector_copies(seqs: list[Sequence]) -> list[Sequence]:
    kept, seen = [], {}
    for seq in seqs:
        key = seq.name
        for suffix in DETECTOR_SUFFIXES:
            key = key.removesuffix(suffix)
        if key in seen:
            logger.warning(f"mot2reid: {seq.name} has the same ground truth as {seen[key]}; skipped")
            continue
        seen[key] = seq.name
        kept.append(seq)
    return kept


def _write_crops(seq: Sequence, crops: list[Crop], tmp: Path, cfg: Mot2ReidConfig) -> None:
    by_frame: dict[int, list[Crop]] = {}
    for c in crops:
        by_frame.setdefault(c.frame, []).append(c)
    last = max(by_frame)
    source = open_source(str(seq.img_dir.parent if seq.img_dir is not None else seq.video))
    done = set()
    try:
        for frame in progress(source, total=last, desc=f"mot2reid {seq.name}", unit="frame"):
            if frame.index in by_frame:
                for c in by_frame[frame.index]:
                    x1, y1, x2, y2 = c.box
                    crop = frame.image[y1:y2, x1:x2]  # seqinfo.ini's size clipped the box; numpy clips again
                    if crop.size == 0:
                        raise UserError(f"{seq.path}: frame {c.frame} is {frame.image.shape[1]}x"
                                        f"{frame.image.shape[0]}, smaller than seqinfo.ini says")
                    name = f"{c.pid:04d}_c{c.segment}_{c.frame:06d}.jpg"
                    ok = cv2.imwrite(str(tmp / c.split / name), crop, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                    if not ok:
                        raise UserError(f"could not write {tmp / c.split / name}")
                done.add(frame.index)
            if frame.index >= last:
                break
    finally:
        source.close()
    missing = sorted(set(by_frame) - done)
    if missing:
        raise UserError(f"{seq.path}: frames {missing[0]}..{missing[-1]} ({len(missing)} with ground truth) "
                        "could not be read from its images/video")


def mot2reid(paths: list[str | Path], out: str | Path, cfg: Mot2ReidConfig | None = None,
             force: bool = False) -> dict:
    """Build the dataset under `out` from the sequences in `paths`; return the summary written beside it."""
    cfg = cfg or Mot2ReidConfig()
    if not 1 <= cfg.segments <= 9:
        raise UserError("--segments must be between 1 and 9 (one digit camera numbers)")
    # 0: every identity trains (fine-tune on all your footage); 1: every identity is query/gallery (a
    # held-out test set cut from sequences the model never trains on).
    if not 0.0 <= cfg.test_fraction <= 1.0:
        raise UserError(f"--test-fraction must be in [0, 1], got {cfg.test_fraction}")
    if cfg.frame_step < 1:
        raise UserError("--frame-step must be >= 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"output {out} exists and is not empty; pass --force to replace it")
    seqs = _dedupe_detector_copies(find_sequences(paths))

    all_crops: dict[str, list[Crop]] = {}
    next_pid = 1
    for seq in seqs:
        crops = person_boxes(seq, cfg)
        if not crops:
            logger.warning(f"mot2reid: {seq.name}: no box passes the filters; skipped")
            continue
        next_pid = assign(crops, seq.name, cfg, next_pid, seq.frame_rate or 30.0)
        all_crops[seq.name] = crops
    crops_flat = [c for crops in all_crops.values() for c in crops]
    if cfg.test_fraction > 0 and not any(c.split == "query" for c in crops_flat):
        raise UserError("no test identity appears in two time segments, so there would be no query; "
                        "use more/longer sequences or fewer --segments")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        for split in SPLITS:
            (tmp / split).mkdir()
        for seq in seqs:
            if seq.name in all_crops:
                _write_crops(seq, all_crops[seq.name], tmp, cfg)
        summary = _summary(seqs, all_crops, cfg)
        write_json(tmp / "mot2reid.json", summary)
        write_text(tmp / "README.txt", _readme(summary))
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished folder into place; an old `out` is removed only after the new one is in."""
    if not out.exists():
        os.replace(new, out)
        return
    trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, trash / "old")
    os.replace(new, out)
    shutil.rmtree(trash, ignore_errors=True)


def _counts(crops: list[Crop]) -> dict:
    out = {}
    for split in SPLITS:
        items = [c for c in crops if c.split == split]
        out[split] = {"ids": len({c.pid for c in items}), "images": len(items)}
    return out


def _summary(seqs: list[Sequence], all_crops: dict[str, list[Crop]], cfg: Mot2ReidConfig) -> dict:
    flat = [c for crops in all_crops.values() for c in crops]
    sequences = {}
    for seq in seqs:
        crops = all_crops.get(seq.name, [])
        sequences[seq.name] = {"path": str(seq.path), "ids": len({c.pid for c in crops}), "crops": len(crops),
                               "segments": max((c.segment for c in crops), default=0), "splits": _counts(crops)}
    pids = {str(c.pid): {"sequence": c.seq, "track": c.track} for c in sorted(flat, key=lambda c: c.pid)}
    return {"format": "market1501-style (read with --dataset mot2reid)", "config": asdict(cfg),
            "splits": _counts(flat), "sequences": sequences, "pids": pids, "versions": versions()}


def _readme(summary: dict) -> str:
    lines = ["ReID crops cut from MOT ground truth by `mot-reid data mot2reid`.",
             "Names: PPPP_cC_FFFFFF.jpg = global pid, time segment of the sequence (the 'camera'), MOT frame.",
             "Read it with `--dataset mot2reid`; mot2reid.json maps each pid to its sequence and track id.", ""]
    for split, c in summary["splits"].items():
        lines.append(f"{split}: {c['ids']} ids, {c['images']} images")
    return "\n".join(lines) + "\n"
