"""MOT Challenge sequences on disk: seqinfo.ini, gt/gt.txt, det/det.txt, img1/ or a video file.

Handles the real quirks (see ../shared/data/README.md): MOT15 gt has 10 columns
(frame,id,x,y,w,h,conf,wx,wy,wz) while MOT16/17/20 gt has 9 (frame,id,x,y,w,h,consider,class,
visibility); a trimmed copy may hold fewer frames in img1/ than seqinfo.ini's seqLength says, so
the frames present are counted; det.txt boxes may extend past the image. Files use 1-based
top-left x,y; everything returned here is 0-based pixel x1,y1,x2,y2.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mot_reid import atomic
from mot_reid.errors import UserError
from mot_reid.log import logger
from trackers.boxes import mot_to_xyxy

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts"}


@dataclass
class Sequence:
    name: str
    path: Path
    frame_rate: float
    width: int
    height: int
    num_frames: int  # frames actually present (img1/ files or video frames); seqLength when neither exists
    seq_length: int  # what seqinfo.ini says
    img_dir: Path | None  # img1/ with 000001.jpg ... when frames are stored as images
    video: Path | None  # a video file in the sequence folder whose frame k is MOT frame k
    det_path: Path | None
    gt_path: Path | None
    mot15: bool  # MOT15 gt layout: score with TrackEval's MOT15 rules (no classes, no distractors)

    @property
    def has_frames(self) -> bool:
        """False for a frame-free copy (seqinfo.ini, gt/, det/ only): boxes can be tracked, not looked at."""
        return self.img_dir is not None or self.video is not None


def load_sequence(path: str | Path) -> Sequence:
    path = Path(path)
    ini = path / "seqinfo.ini"
    if not path.is_dir():
        raise UserError(f"sequence folder not found: {path}")
    if not ini.is_file():
        raise UserError(f"{path} is not a MOT sequence: no seqinfo.ini")
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
        info = parser["Sequence"]
        name = info.get("name", path.name)
        seq_length = int(info["seqLength"])
        frame_rate = float(info.get("frameRate", "30"))
        width, height = int(info.get("imWidth", "0")), int(info.get("imHeight", "0"))
        im_dir, im_ext = info.get("imDir", "img1"), info.get("imExt", ".jpg")
    except (KeyError, ValueError, configparser.Error) as exc:
        raise UserError(f"{ini}: unreadable [Sequence] section ({exc.__class__.__name__}: {exc})") from None

    img_dir = path / im_dir
    video = None
    if img_dir.is_dir() and (img_dir / f"{1:06d}{im_ext}").is_file():
        num_frames = _count_image_frames(img_dir, im_ext, seq_length)
    else:
        img_dir = None
        video = _find_video(path, name)
        num_frames = _count_video_frames(video) if video is not None else seq_length
        if video is not None and seq_length:
            num_frames = min(num_frames, seq_length)
    det = path / "det" / "det.txt"
    gt = path / "gt" / "gt.txt"
    gt_path = gt if gt.is_file() else None
    return Sequence(name=name, path=path, frame_rate=frame_rate, width=width, height=height,
                    num_frames=num_frames, seq_length=seq_length, img_dir=img_dir, video=video,
                    det_path=det if det.is_file() else None, gt_path=gt_path,
                    mot15=_is_mot15_gt(gt_path) if gt_path else name.split("-")[0] in ("PETS09", "TUD"))


def find_sequences(paths: list[str | Path]) -> list[Sequence]:
    """Each path is a sequence folder (has seqinfo.ini) or a root holding sequence folders."""
    found: list[Sequence] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"path not found: {path}")
        if (path / "seqinfo.ini").is_file():
            found.append(load_sequence(path))
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and (p / "seqinfo.ini").is_file()) \
            if path.is_dir() else []
        if not children:
            raise UserError(f"{path} is not a MOT sequence (no seqinfo.ini) and holds no sequence folders")
        found.extend(load_sequence(p) for p in children)
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"sequence name given twice: {', '.join(duplicates)}")
    return found


def require_frames(sequences: list[Sequence], needed_for: str) -> None:
    """Raise UserError naming the sequences that have neither img1/ nor a video, when frames are needed."""
    missing = [s.name for s in sequences if not s.has_frames]
    if missing:
        raise UserError(f"{needed_for} needs frames, but {', '.join(missing)} has no img1/ or video "
                        "(frame-free sequences take --detections public --reid none with cmc=none only)")


def read_mot_rows(path: str | Path, min_columns: int = 6) -> np.ndarray:
    """All rows of a MOT text file as float64 (R, C); an empty file gives (0, min_columns)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return np.zeros((0, min_columns))
    try:
        rows = [[float(v) for v in ln.replace(" ", "").split(",") if v != ""] for ln in lines]
    except ValueError:
        raise UserError(f"{path}: not a MOT file (expected comma-separated numbers)") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1 or min(widths) < min_columns:
        raise UserError(f"{path}: rows must all have the same number (>= {min_columns}) of comma-separated columns")
    return np.asarray(rows, dtype=np.float64)


def read_detections(path: str | Path, num_frames: int | None = None,
                    seq_length: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """det.txt -> {frame: (xyxy float32 (N,4), score float32 (N,))}, frames 1-based.

    Rows for frames after `num_frames` (frames the trimmed copy does not hold) are dropped;
    rows outside 1..seq_length are an error (the file belongs to another sequence).
    """
    rows = read_mot_rows(path, min_columns=7)
    if len(rows) == 0:
        raise UserError(f"{path}: detection file is empty")
    frames = rows[:, 0].astype(np.int64)
    limit = seq_length or num_frames
    if limit is not None and (frames.min() < 1 or frames.max() > limit):
        bad = frames[(frames < 1) | (frames > limit)][0]
        raise UserError(f"{path}: detection for frame {bad} outside the sequence's frames 1..{limit}")
    if num_frames is not None and frames.max() > num_frames:
        kept = frames <= num_frames
        logger.debug("%s: dropping %d detections after frame %d (frames not present)", path, (~kept).sum(), num_frames)
        rows, frames = rows[kept], frames[kept]
    xyxy = mot_to_xyxy(rows[:, 2:6]).astype(np.float32)
    score = rows[:, 6].astype(np.float32)
    order = np.argsort(frames, kind="stable")
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    uniq, starts = np.unique(frames[order], return_index=True)
    for f, idx in zip(uniq, np.split(order, starts[1:]), strict=True):
        out[int(f)] = (xyxy[idx], score[idx])
    return out


def check_gt(seq: Sequence) -> None:
    """Raise UserError unless the sequence has a readable gt whose frames lie in 1..num_frames."""
    if seq.gt_path is None:
        raise UserError(f"sequence {seq.name} has no gt/gt.txt to score against")
    rows = read_mot_rows(seq.gt_path, min_columns=7)
    if len(rows) == 0:
        return
    frames = rows[:, 0]
    if frames.min() < 1 or frames.max() > seq.num_frames:
        raise UserError(f"{seq.gt_path}: ground truth for frame {int(frames.max())} but the sequence has "
                        f"{seq.num_frames} frames")


def write_mot_results(path: str | Path, rows) -> Path:
    """Write result rows `frame,id,x,y,w,h,score,-1,-1,-1` (1-based frame and box) atomically."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 10) if len(rows) else np.zeros((0, 10))
    lines = [f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.4f},-1,-1,-1" for r in rows]
    path = Path(path)
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def _count_image_frames(img_dir: Path, ext: str, seq_length: int) -> int:
    """Frames 1..k that exist in img1/ (a trimmed copy stops early; a gap ends the sequence)."""
    present = {p.name for p in img_dir.iterdir()}
    count = 0
    while f"{count + 1:06d}{ext}" in present and (not seq_length or count < seq_length):
        count += 1
    return count


def _find_video(path: Path, name: str) -> Path | None:
    videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    named = [p for p in videos if p.stem == name]
    return (named or videos or [None])[0]


def _count_video_frames(video: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise UserError(f"cannot open video {video}")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if count <= 0:
        raise UserError(f"video {video} reports no frames")
    return count


def _is_mot15_gt(gt: Path) -> bool:
    """MOT15 gt rows have 10 columns (world coordinates at the end); MOT16/17/20 rows have 9."""
    with gt.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return len(line.strip().rstrip(",").split(",")) >= 10
    return False
