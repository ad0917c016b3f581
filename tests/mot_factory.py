"""Tiny MOT sequence folders for tests (frames are empty files: only counted, never decoded)."""

from __future__ import annotations


def make_seq(root, name="SEQ-01", length=5, frames=3, det="1,-1,10,20,30,60,0.9,-1,-1,-1\n", gt=None):
    seq = root / name
    (seq / "img1").mkdir(parents=True)
    (seq / "det").mkdir()
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate=10\nseqLength={length}\nimWidth=64\nimHeight=48\nimExt=.jpg\n")
    for k in range(1, frames + 1):
        (seq / "img1" / f"{k:06d}.jpg").write_bytes(b"")
    (seq / "det" / "det.txt").write_text(det)
    if gt is not None:
        (seq / "gt").mkdir()
        (seq / "gt" / "gt.txt").write_text(gt)
    return seq
