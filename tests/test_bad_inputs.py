"""Bad input, as a new user would type it, across every command: one table, run through the real CLI.

Each row is one `mot-reid ...` subprocess. Every row must end in exit code 2, exactly one non-empty
stderr line that names the problem (`match`), no traceback, and nothing written where the outputs would
have gone. The bad files are generated once per session; all rows run concurrently up front (a few at a
time, each process imports torch) and each parametrized test then checks its own row.

Placeholders in a row's arguments: {bad} the folder of generated bad files, {out} this row's own output
folder (must hold no file afterwards), {demo} the demo clip, {w} ../shared/data/weights, {mot}
../shared/data/mot. Rows marked `needs_chmod` rely on chmod 000 / 555, which root ignores: they are skipped
when this user can still read the file. Only the rows `-k` selects are run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # reads ../shared/data


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]
    match: str  # a substring of the one stderr line
    needs_chmod: bool = False  # relies on chmod stopping this user (root ignores it)


def row(id: str, args: str, match: str, needs_chmod: bool = False) -> Row:
    return Row(id, tuple(args.split()), match, needs_chmod)




def track(src: str = "{demo}", out: str = "{out}/t.json") -> str:
    return f"track {src} --out {out} --detector hog --reid none --max-frames 2 --no-progress"


TRACK = track()
EVAL = "eval --out-dir {out}/e --json {out}/s.json"
TRAIN = ("train --config cpu_resnet18 --dataset folder --data {bad}/reid_ok --output {out}/r --set solver.epochs=1 "
         "data.ids_per_batch=2 data.images_per_id=2")
REID = "eval-reid --data {bad}/reid_ok --dataset folder --json {out}/r.json"
BATCH = "batch --out-dir {out}/b --detector hog --reid none --max-frames 2 --no-progress"

ROWS = [
    # --- track: the source
    row("track-empty-video", track("{bad}/empty.mp4"), "cannot decode video"),
    row("track-truncated-video", track("{bad}/cut.mp4"), "cannot decode video"),
    row("track-text-as-video", track("{bad}/notes.txt"), "cannot decode video"),
    row("track-unreadable-video", track("{bad}/locked.mp4"), "locked.mp4", needs_chmod=True),
    row("track-empty-folder", track("{bad}/emptydir"), "no images or video"),
    row("track-corrupt-images", track("{bad}/badimgs"), "cannot decode image"),
    # --- track: public detections
    row("track-det-empty", TRACK + " --detections {bad}/det_empty.txt", "detection file is empty"),
    row("track-det-garbage-rows", TRACK + " --detections {bad}/det_garbage.txt", "not a MOT file"),
    # --- track: foreign or broken files in each model slot
    row("track-detector-text", TRACK + " --detector {bad}/notes.txt", "cannot load detector"),
    row("track-detector-reid-weights", TRACK + " --detector {w}/osnet_x0_25_msmt17.pth", "cannot load detector"),
    row("track-reid-yolo-weights", TRACK + " --reid {w}/yolov8n.pt", "not a ReID checkpoint"),
    row("track-reid-truncated", TRACK + " --reid {bad}/cut.pth", "cannot read ReID weights"),
    row("track-reid-unreadable", TRACK + " --reid {bad}/locked.pth", "locked.pth", needs_chmod=True),
    # --- track: tracker and pipeline YAMLs
    row("track-tracker-unknown-key", TRACK + " --tracker {bad}/trk_unknown.yaml", "max_agee"),
    row("track-tracker-not-yaml", TRACK + " --tracker {bad}/trk_broken.yaml", "not valid YAML"),
    row("track-tracker-out-of-range", TRACK + " --tracker {bad}/trk_range.yaml", "'max_age' must be >= 0"),
    row("track-config-wrong-type", TRACK + " --config {bad}/pipe_type.yaml", "expects a number"),
    row("track-config-out-of-range", TRACK + " --config {bad}/pipe_range.yaml", "'detector.conf' must be in [0, 1]"),
    # --- track: outputs that cannot be written
    row("track-out-under-a-file", track("{demo}", "{bad}/notes.txt/t.json") + " --mot-txt {out}/t.txt",
        "notes.txt is a file, not a folder"),
    row("track-out-read-only-folder", track("{demo}", "{bad}/readonly/t.json")
        + " --mot-txt {out}/t.txt", "not writable", needs_chmod=True),
    row("track-video-under-a-file", TRACK + " --save-video {bad}/notes.txt/t.mp4", "notes.txt is a file"),
    row("track-out-is-a-folder", track("{demo}", "{bad}/emptydir"), "it is a folder"),
    row("track-device-cuda", TRACK + " --device cuda", "CUDA is not available"),
    # --- eval
    row("eval-empty-folder", EVAL + " {bad}/emptydir", "holds no sequence folders"),
    row("eval-broken-seqinfo", EVAL + " {bad}/seq_badini", "seqinfo.ini"),
    row("eval-det-garbage-rows", EVAL + " {bad}/seq_baddet", "not a MOT file"),
    row("eval-gt-garbage-rows", EVAL + " {bad}/seq_badgt", "not a MOT file"),
    row("eval-out-dir-under-a-file", "eval {mot}/TUD-Campus --out-dir {bad}/notes.txt/e --json {out}/s.json",
        "notes.txt is a file"),
    # --- eval on frame-free sequences
    row("eval-noframes-reid", EVAL + " {mot}/MOT15-noframes/KITTI-13 --reid {w}/osnet_x0_25_msmt17.pth",
        "needs frames"),
    row("eval-noframes-yolo", EVAL + " {mot}/MOT15-noframes/KITTI-13 --detections yolo", "needs frames"),
    # --- train
    row("train-empty-data", TRAIN.replace("{bad}/reid_ok", "{bad}/emptydir"), "no images named"),
    row("train-recipe-unknown-key", TRAIN + " --config {bad}/rec_unknown.yaml", "solver.epochz"),
    row("train-recipe-wrong-type", TRAIN + " --config {bad}/rec_type.yaml", "expects an integer"),
    row("train-recipe-negative-lr", TRAIN + " solver.lr=-1", "solver.lr"),
    row("train-pretrained-yolo-weights", TRAIN + " model.pretrained={w}/yolov8n.pt", "cannot read weights"),
    row("train-resume-foreign-checkpoint",
        TRAIN.replace("{out}/r", "{bad}/foreign_run") + " --resume", "cannot read checkpoint"),
    row("train-device-cuda", TRAIN + " runtime.device=cuda", "CUDA is not available"),
    # --- eval-reid
    row("eval-reid-yolo-checkpoint", REID + " --checkpoint {w}/yolov8n.pt", "cannot read checkpoint"),
    row("eval-reid-empty-checkpoint", REID + " --checkpoint {bad}/empty.pt", "cannot read checkpoint"),
    row("eval-reid-device-cuda", REID + " --checkpoint {bad}/empty.pt --device cuda", "CUDA is not available"),
    # --- data mot2reid
    row("mot2reid-empty-folder", "data mot2reid {bad}/emptydir --out {out}/m", "holds no sequence folders"),
    row("mot2reid-gt-garbage-rows", "data mot2reid {bad}/seq_badgt --out {out}/m", "not a MOT file"),
    row("mot2reid-out-not-empty", "data mot2reid {mot}/TUD-Campus --out {bad}/badimgs", "not empty"),
    # --- batch
    row("batch-empty-list", BATCH + " {bad}/empty_list.txt", "no inputs in"),
    row("batch-out-dir-is-a-file", BATCH.replace("{out}/b", "{bad}/notes.txt") + " {demo}",
        "notes.txt is a file"),
    row("batch-device-cuda", BATCH + " {demo} --device cuda", "CUDA is not available"),
    # --- export: rows join here when `mot-reid export` lands (foreign checkpoint, unwritable --out, ...).
]


def _write_bad_files(bad: Path, shared: Path) -> bool:
    """Every bad input the table names; returns whether chmod 000 makes a file unreadable here."""
    demo = (REPO / "assets/pets09_s2l1_demo.mp4").read_bytes()
    osnet = (shared / "weights/osnet_x0_25_msmt17.pth").read_bytes()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "empty.pt").write_bytes(b"")
    (bad / "cut.mp4").write_bytes(demo[: len(demo) // 3])  # moov atom at the end: nothing decodable
    (bad / "cut.pth").write_bytes(osnet[: len(osnet) // 2])
    (bad / "notes.txt").write_text("meeting notes\n")
    for name, data in (("locked.mp4", demo), ("locked.pth", osnet)):
        (bad / name).write_bytes(data)
        (bad / name).chmod(0)
    (bad / "emptydir").mkdir()
    (bad / "readonly").mkdir()
    (bad / "readonly").chmod(0o555)
    (bad / "badimgs").mkdir()
    (bad / "badimgs/000001.jpg").write_bytes(b"not a jpeg" * 10)
    (bad / "det_empty.txt").write_text("")
    (bad / "det_garbage.txt").write_text("1,-1,10,10,50,100,0.9,-1,-1,-1\n2,-1,ten,10,50,100,0.9,-1,-1,-1\n")
    yamls = {
        "trk_unknown.yaml": "max_agee: 5\n", "trk_range.yaml": "max_age: -1\n",
        "trk_broken.yaml": "max_age: [1, 2\n",
        "pipe_type.yaml": "detector:\n  conf: high\n", "pipe_range.yaml": "detector:\n  conf: 2\n",
        "rec_unknown.yaml": f"_base_: {REPO}/configs/reid/cpu_resnet18.yaml\nsolver:\n  epochz: 1\n",
        "rec_type.yaml": f"_base_: {REPO}/configs/reid/cpu_resnet18.yaml\nsolver:\n  warmup_epochs: three\n",
    }
    for name, text in yamls.items():
        (bad / name).write_text(text)
    # MOT sequences: a frame-free copy of TUD-Campus's annotations, each broken in one way.
    tud = shared / "mot/TUD-Campus"
    for name in ("seq_badini", "seq_baddet", "seq_badgt", "seq_nodet"):
        seq = bad / name
        (seq / "gt").mkdir(parents=True)
        (seq / "det").mkdir()
        (seq / "seqinfo.ini").write_text((tud / "seqinfo.ini").read_text())
        (seq / "gt/gt.txt").write_text((tud / "gt/gt.txt").read_text())
        (seq / "det/det.txt").write_text((tud / "det/det.txt").read_text())
    (bad / "seq_badini/seqinfo.ini").write_text("[Sequence]\nname=seq_badini\nseqLength=many\n")
    (bad / "seq_baddet/det/det.txt").write_text("1,-1,1,2,3,4,0.9,-1,-1,-1\nx,y,z\n")
    (bad / "seq_badgt/gt/gt.txt").write_text("1,1,1,2,3,4,1,-1,-1,-1\nNaN?,1,2\n")
    (bad / "seq_nodet/det/det.txt").unlink()
    # A tiny valid ReID folder (4 ids x 2 cameras), so train/eval-reid reach the part under test.
    reid = bad / "reid_ok"
    rng = np.random.default_rng(0)
    for split in ("train", "query", "gallery"):
        (reid / split).mkdir(parents=True)
        for pid in range(4):
            for cam in (1, 2):
                image = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
                cv2.imwrite(str(reid / split / f"{pid:04d}_c{cam}_{split}.jpg"), image)
    # A training run folder whose checkpoint.pt is somebody else's file (YOLO weights).
    (bad / "foreign_run").mkdir()
    (bad / "foreign_run/checkpoint.pt").symlink_to(shared / "weights/yolov8n.pt")
    (bad / "empty_list.txt").write_text("# no inputs yet\n")
    try:
        (bad / "locked.pth").read_bytes()
        return False
    except PermissionError:
        return True


@pytest.fixture(scope="session")
def results(request, tmp_path_factory, shared_data):
    """Run every selected row once, 3 at a time; {row id: (CompletedProcess, files left in its output folder)}."""
    root = tmp_path_factory.mktemp("bad_inputs")
    bad = root / "bad"
    bad.mkdir()
    chmod_works = _write_bad_files(bad, shared_data)
    places = {"bad": bad, "demo": REPO / "assets/pets09_s2l1_demo.mp4", "w": shared_data / "weights",
              "mot": shared_data / "mot"}

    def run(r: Row):
        out = root / "out" / r.id
        out.mkdir(parents=True)
        args = [a.format(out=out, **places) for a in r.args]
        proc = subprocess.run([sys.executable, "-m", "mot_reid.cli", *args], capture_output=True, text=True,
                              cwd=out, env={**os.environ, "MOT_REID_CHECKPOINT": ""}, timeout=300)
        return proc, sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())

    selected = {item.callspec.params["r"].id for item in request.session.items
                if hasattr(item, "callspec") and "r" in item.callspec.params}
    todo = [r for r in ROWS if r.id in selected and (chmod_works or not r.needs_chmod)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip((r.id for r in todo), pool.map(run, todo), strict=True))
    (bad / "locked.mp4").chmod(0o600)
    (bad / "locked.pth").chmod(0o600)
    (bad / "readonly").chmod(0o755)
    return done, bad


def test_table_is_large_and_unique():
    assert len(ROWS) >= 30 and len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("r", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line_and_exit_2(results, r):
    if r.id not in results[0]:
        pytest.skip("chmod 000 does not stop this user (root) from reading the file")
    proc, left = results[0][r.id]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert r.match in lines[0] and lines[0].startswith("mot-reid "), lines[0]
    assert left == [], left


def test_no_temp_file_left_beside_outputs_that_failed(results):
    # Rows that aim an output into the bad-files folder must not leave an atomic write's temp file there.
    assert [p.name for p in results[1].rglob(".*")] == []
