"""The mission's loop, measured on a sequence the models never saw: fine-tune the Bag-of-Tricks model on
crops cut from MOT17-mini + TUD-Campus, then track PETS09-S2L1 with its features.

Rows (same detections and the same tracker config within a detection set):
  a  motion only                                  (`--reid none`, the tracker `auto` picks without ReID)
  b  OSNet x0.25 MSMT17, off the shelf             (torchreid zoo file, its 512-D fc feature)
  c  b fine-tuned by `mot-reid train`, pre-BN     (configs/reid/finetune_osnet.yaml)
  d  the same models, post-BN features
  c' c with OSNet's own fc embedding layer kept under the BNNeck (`model.embedding_layer: true`), d' its post-BN
  e  BoT ResNet18 from random init, same crops    (configs/reid/cpu_resnet18.yaml), pre-BN
Plus the ablation: each trick switched off in turn from the fine-tune recipe. Trained rows run once
per seed; tables give the mean and the spread (min-max) over seeds. ReID rank-1/mAP are measured on
PETS09-S2L1 crops (`mot2reid --test-fraction 1`: every identity is query/gallery), never trained on.

YOLOv8n detections (conf 0.1, imgsz 640, persons) are computed once and written as a det.txt, so every
row of the YOLO column tracks identical boxes, as the public-detection column does.

    python scripts/reid_for_tracking.py                  # everything, 3 seeds, writes BENCHMARKS.md
    python scripts/reid_for_tracking.py --seeds 0 --part loop
Runs are cached under --work: re-running skips trainings and scores already done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import machine, update_section  # noqa: E402

from mot_reid import config  # noqa: E402
from mot_reid.atomic import write_json  # noqa: E402
from mot_reid.detection import DetectorSettings, FileDetections, build_detector  # noqa: E402
from mot_reid.embedding import build_embedder  # noqa: E402
from mot_reid.log import setup_logging  # noqa: E402
from mot_reid.mot_data import find_sequences, write_mot_results  # noqa: E402
from mot_reid.mot_eval import pipeline_results, score_results  # noqa: E402
from mot_reid.pipeline import Pipeline  # noqa: E402
from mot_reid.reid.datasets import load_dataset  # noqa: E402
from mot_reid.reid.evaluate import evaluate_model, extract_features  # noqa: E402
from mot_reid.reid.model import load_checkpoint_model  # noqa: E402
from mot_reid.reid.mot2reid import Mot2ReidConfig, mot2reid  # noqa: E402
from mot_reid.reid.osnet import osnet_from_state_dict  # noqa: E402
from mot_reid.reid.recipe import ReIDRecipe  # noqa: E402
from mot_reid.reid.train import train  # noqa: E402
from mot_reid.sources import open_source  # noqa: E402
from mot_reid.tracker_config import load_tracker_config, resolve_tracker_name  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_SEQS = [SHARED / "mot" / "MOT17-mini" / "train", SHARED / "mot" / "TUD-Campus"]
TEST_SEQ = SHARED / "mot" / "PETS09-S2L1"
OSNET = SHARED / "weights" / "osnet_x0_25_msmt17.pth"
YOLO = SHARED / "weights" / "yolov8n.pt"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "reid"

# name -> (recipe, overrides): every trained variant, the fine-tune recipe's ablation included.
FINETUNE = (CONFIGS / "finetune_osnet.yaml", [f"model.pretrained={OSNET}"])
VARIANTS = {
    "finetune": FINETUNE,
    "finetune_fc": (FINETUNE[0], FINETUNE[1] + ["model.embedding_layer=true"]),
    "finetune_head10": (FINETUNE[0], FINETUNE[1] + ["solver.head_lr_factor=10"]),
    "finetune_half_ids": FINETUNE,  # trained on every other identity (HALF_IDS)
    "finetune_6ep": (FINETUNE[0], FINETUNE[1] + ["solver.epochs=6", "solver.milestones=[4]", "solver.warmup_epochs=1",
                                                 "solver.checkpoint_every=6", "solver.eval_every=6"]),
    "finetune_24ep": (FINETUNE[0], FINETUNE[1] + ["solver.epochs=24", "solver.milestones=[16]",
                                                  "solver.checkpoint_every=24", "solver.eval_every=24"]),
    "resnet18": (CONFIGS / "cpu_resnet18.yaml", []),
    "no_warmup": (FINETUNE[0], FINETUNE[1] + ["solver.warmup_epochs=0"]),
    "no_erasing": (FINETUNE[0], FINETUNE[1] + ["input.erasing_p=0"]),
    "no_smoothing": (FINETUNE[0], FINETUNE[1] + ["loss.label_smoothing=0"]),
    "no_bnneck": (FINETUNE[0], FINETUNE[1] + ["model.neck=none"]),
    "no_center": (FINETUNE[0], FINETUNE[1] + ["loss.center=false"]),
}
ABLATION = [("finetune", "fine-tune recipe (all tricks)"), ("no_warmup", "- warmup"),
            ("no_erasing", "- random erasing"), ("no_smoothing", "- label smoothing"),
            ("no_bnneck", "- BNNeck (pooled feature to the classifier; no running mean, so the tracker's feature is "
                           "not centred)"), ("no_center", "- center loss")]
# Why the fine-tune does not beat the zoo model: fewer identities, a shorter or longer schedule, a head that learns.
WHY = [("finetune", "fine-tune recipe: 95 identities, 12 epochs"), ("finetune_half_ids", "half the identities"),
       ("finetune_6ep", "6 epochs (1 of warmup, x0.1 at 4)"), ("finetune_24ep", "24 epochs (x0.1 at 16)"),
       ("finetune_head10", "new head (BNNeck + classifier) at 10x the LR")]
HALF_IDS = {"finetune_half_ids"}
METRICS = ("HOTA", "AssA", "IDF1", "IDSW")
DETECTOR_KIND = {"public": "file", "yolo": "yolo"}  # what `auto` is told about each detection set


def build_sets(work: Path) -> tuple[Path, Path]:
    """The training crops (all identities of the two training sources) and the held-out PETS09 test set."""
    train_dir, test_dir = work / "m2r_train", work / "m2r_pets09"
    if not (train_dir / "mot2reid.json").is_file():
        mot2reid(TRAIN_SEQS, train_dir, Mot2ReidConfig(test_fraction=0.0), force=True)
    if not (test_dir / "mot2reid.json").is_file():
        # Every 4th frame: consecutive frames give near-duplicate gallery crops and only cost time.
        mot2reid([TEST_SEQ], test_dir, Mot2ReidConfig(test_fraction=1.0, frame_step=4), force=True)
    return train_dir, test_dir


def half_ids(train_dir: Path) -> Path:
    """Every other identity of the training set (links to its crops): does the feature need more people?"""
    half = train_dir.with_name(train_dir.name + "_half_ids")
    if not half.is_dir():
        crops = sorted((train_dir / "bounding_box_train").glob("*.jpg"))
        keep = sorted({c.name.split("_")[0] for c in crops})[::2]
        tmp = half.with_name(half.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed half-way
        for split in ("bounding_box_train", "bounding_box_test", "query"):
            (tmp / split).mkdir(parents=True, exist_ok=True)
        for c in crops:
            if c.name.split("_")[0] in keep:
                (tmp / "bounding_box_train" / c.name).symlink_to(c.resolve())
        tmp.rename(half)
    return half


def yolo_detections(seq, out: Path) -> Path:
    """YOLOv8n boxes of every frame as a MOT det.txt (frame,-1,x,y,w,h,score,-1,-1,-1)."""
    if out.is_file():
        return out
    detector = build_detector(str(YOLO), "cpu", DetectorSettings(conf=0.1, imgsz=640, classes=[0]))
    rows, batch = [], []

    def flush():
        for frame, det in zip(batch, detector([f.image for f in batch], [f.index for f in batch]), strict=True):
            for (x1, y1, x2, y2), s in zip(det.xyxy, det.score, strict=True):
                rows.append(f"{frame.index},-1,{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1")
        batch.clear()

    for frame in open_source(str(seq.img_dir or seq.video or seq.path), fps=seq.frame_rate):
        batch.append(frame)
        if len(batch) == 8:
            flush()
    if batch:
        flush()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out


def train_variant(name: str, seed: int, train_dir: Path, work: Path) -> Path:
    run = work / "runs" / f"{name}_s{seed}"
    model_path = run / "model.pt"
    if model_path.is_file():
        return model_path
    if name in HALF_IDS:
        train_dir = half_ids(train_dir)
    recipe_path, overrides = VARIANTS[name]
    recipe = config.load(ReIDRecipe, recipe_path, [*overrides, f"solver.seed={seed}", "runtime.device=cpu",
                                                   "data.dataset=mot2reid"])
    start = time.perf_counter()
    train(recipe, train_dir, run)
    (run / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return model_path


class _OsnetFeatures(torch.nn.Module):
    """The zoo OSNet behind the `extract(x, feat)` interface the ReID evaluation calls."""

    def __init__(self, state: dict):
        super().__init__()
        self.net = osnet_from_state_dict(state)[0]

    def extract(self, x, feat="before"):
        return F.normalize(self.net(x).float(), dim=1)


class _Centred(torch.nn.Module):
    """A model without BNNeck, its pooled feature centred by the training crops' mean before L2-normalisation:
    about what the BNNeck's running mean (gathered on augmented training batches) does for the full recipe's
    tracker feature, so that the `- BNNeck` ablation row can compare necks rather than centring (feature kind
    `centred`, this script only)."""

    def __init__(self, model: torch.nn.Module, recipe: ReIDRecipe, train_dir: Path):
        super().__init__()
        self.model = model.eval()
        crops = load_dataset(train_dir, "mot2reid").train
        self.centre = extract_features(self, crops, recipe, "cpu", feat="raw", num_workers=0)[0].mean(0)
        self.eval()  # extract_features restores the mode it found (train, for a fresh module)

    def extract(self, x, feat="before"):
        pooled = self.model.features(x)[0].float()
        return pooled if feat == "raw" else F.normalize(pooled - self.centre, dim=1)

    def forward(self, x):
        return self.extract(x)


def reid_scores(weights: Path, feature: str, test_dir: Path, train_dir: Path) -> dict:
    dataset = load_dataset(test_dir, "mot2reid")
    if weights == OSNET:
        model, recipe = _OsnetFeatures(torch.load(weights, map_location="cpu", weights_only=True)), ReIDRecipe()
    else:
        model, recipe = load_checkpoint_model(weights, "cpu")
        if feature == "centred":
            model, feature = _Centred(model, recipe, train_dir), "before"
    m = evaluate_model(model, dataset, recipe, "cpu", feat=feature, num_workers=0)
    return {"rank1": 100 * m["rank1"], "mAP": 100 * m["mAP"]}


def track_scores(seq, det_path: Path, weights: str, feature: str, out: Path, detector_kind: str,
                 train_dir: Path) -> dict:
    """HOTA/AssA/IDF1/IDSW of one embedder on one detection set; `weights` none = motion only."""
    embedder = build_embedder(weights, torch.device("cpu"), feature="before" if feature == "centred" else feature)
    if feature == "centred":
        embedder.extract = _Centred(*load_checkpoint_model(weights, "cpu"), train_dir)
    cfg = load_tracker_config(resolve_tracker_name("auto", with_appearance=embedder is not None,
                                                   detector_kind=detector_kind))
    pipeline = Pipeline(FileDetections(str(det_path)), embedder, torch.device("cpu"), batch=8)
    rows = pipeline_results(dataclasses.replace(seq, det_path=det_path), cfg, pipeline, public=True)
    scores = score_results([seq], {seq.name: write_mot_results(out, rows)})[seq.name]
    return {k: scores[k] for k in METRICS}


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    write_json(path, result)
    return result


def summarise(values: list[float], integer: bool = False) -> str:
    fmt = (lambda v: f"{v:.0f}") if integer else (lambda v: f"{v:.1f}")
    text = fmt(statistics.fmean(values))
    return text if len(values) == 1 else f"{text} ({fmt(min(values))}-{fmt(max(values))}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/reid_for_tracking"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--part", choices=("loop", "ablation", "why", "all"), default="all")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), metavar="VARIANT",
                        help="train only these variants; others enter the tables where already trained")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    setup_logging()
    torch.manual_seed(0)
    work = args.work
    train_dir, test_dir = build_sets(work)
    seq = find_sequences([str(TEST_SEQ)])[0]
    detsets = {"public": seq.det_path, "yolo": yolo_detections(seq, work / "yolo_det.txt")}

    def score(tag: str, weights, feature: str, detset: str) -> dict:
        result = cached(work / "scores" / f"{tag}_{feature}_{detset}.json", lambda: track_scores(
            seq, detsets[detset], str(weights), feature, work / "tracks" / f"{tag}_{feature}_{detset}.txt",
            DETECTOR_KIND[detset], train_dir))
        if weights != "none":
            result = {**result, **cached(work / "scores" / f"{tag}_{feature}_reid.json",
                                         lambda: reid_scores(Path(weights), feature, test_dir, train_dir))}
        return result

    def wanted(name: str, seed: int) -> bool:
        return not args.only or name in args.only or (work / "runs" / f"{name}_s{seed}" / "model.pt").is_file()

    rows: dict[str, dict[str, list[dict]]] = {}  # row label -> detset -> one result per seed
    if args.part in ("loop", "all"):
        for detset in detsets:  # row a's tag names the tracker config auto picks for these boxes
            motion = resolve_tracker_name("auto", with_appearance=False, detector_kind=DETECTOR_KIND[detset])
            rows.setdefault("a", {})[detset] = [score(motion, "none", "before", detset)]
            rows.setdefault("b", {})[detset] = [score("osnet_msmt17", OSNET, "before", detset)]
        for seed in args.seeds:
            for name, label, feature in (("finetune", "c", "before"), ("finetune", "d", "after"),
                                         ("finetune_fc", "c2", "before"), ("finetune_fc", "d2", "after"),
                                         ("resnet18", "e", "before")):
                if not wanted(name, seed):
                    continue
                weights = train_variant(name, seed, train_dir, work)
                for detset in detsets:
                    rows.setdefault(label, {}).setdefault(detset, []).append(
                        score(f"{name}_s{seed}", weights, feature, detset))
    ablation: dict[str, list[dict]] = {}
    if args.part in ("ablation", "all"):
        for seed in args.seeds:
            for name, _ in ABLATION:
                if not wanted(name, seed):
                    continue
                weights = train_variant(name, seed, train_dir, work)
                ablation.setdefault(name, []).append(score(f"{name}_s{seed}", weights, "before", "public"))
                if name == "finetune":
                    ablation.setdefault("finetune_after", []).append(score(f"{name}_s{seed}", weights, "after",
                                                                           "public"))
                if name == "no_bnneck":
                    ablation.setdefault("no_bnneck_centred", []).append(score(f"{name}_s{seed}", weights,
                                                                              "centred", "public"))
    why: dict[str, list[dict]] = {}
    if args.part in ("why", "all"):
        for seed in args.seeds:
            for name, _ in WHY:
                if wanted(name, seed):
                    why.setdefault(name, []).append(score(f"{name}_s{seed}", train_variant(name, seed, train_dir, work),
                                                          "before", "public"))
    text = report(rows, ablation, why, args, train_dir, work)
    print(text)
    if not args.no_write:
        update_section("reid_for_tracking", text)


LABELS = {"a": "a. motion only", "b": "b. OSNet x0.25 MSMT17, off the shelf",
          "c": "c. b fine-tuned by mot-reid (BoT head on conv5, 128-D), **pre-BN**", "d": "d. the same models, post-BN",
          "c2": "c'. c keeping OSNet's own fc embedding (512-D, `model.embedding_layer`), pre-BN",
          "d2": "d'. c', post-BN",
          "e": "e. BoT ResNet18, random init, pre-BN"}


def report(rows, ablation, why, args, train_dir: Path, work: Path) -> str:
    summary = json.loads((train_dir / "mot2reid.json").read_text())["splits"]["bounding_box_train"]
    seconds = [float(p.read_text()) for p in (work / "runs").glob("finetune_s*/seconds.txt")]
    tracker = resolve_tracker_name("auto", with_appearance=True)
    lines = [f"### Fine-tuned BoT features drive the tracker: PETS09-S2L1, never trained on ({machine()}, CPU)", "",
             f"Trained on {summary['ids']} identities / {summary['images']} crops cut from MOT17-mini + TUD-Campus "
             f"(`mot-reid data mot2reid ... --test-fraction 0`); fine-tune recipe `configs/reid/finetune_osnet.yaml`"
             + (f", {statistics.fmean(seconds):.0f} s per run" if seconds else "") + f". Seeds {args.seeds}: mean "
             "(min-max, n = seeds run) where a row is trained more than once. Tracker: `auto` ("
             f"`{tracker}` with ReID, "
             f"`{resolve_tracker_name('auto', with_appearance=False)}` / "
             f"`{resolve_tracker_name('auto', with_appearance=False, detector_kind='yolo')}` (public / YOLO) for "
             "row a). ReID rank-1 / mAP: PETS09-S2L1 "
             "crops, every identity as query/gallery (`--test-fraction 1 --frame-step 4`), the row's feature.", ""]
    if rows:
        lines += ["| row | detections | HOTA | AssA | IDF1 | IDSW | ReID rank-1 | ReID mAP |",
                  "|---|---|---|---|---|---|---|---|"]
        for label in ("a", "b", "c", "d", "c2", "d2", "e"):
            for detset, results in rows.get(label, {}).items():
                name = "public (Faster R-CNN det.txt)" if detset == "public" else "YOLOv8n conf 0.1"
                cells = [summarise([r[m] for r in results], m == "IDSW") for m in METRICS]
                cells += [summarise([r[m] for r in results]) if "mAP" in results[0] else "-" for m in ("rank1", "mAP")]
                lines.append(f"| {LABELS[label]} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if ablation:
        lines += ["Ablation from the fine-tune recipe, public detections (tracker pre-BN features unless noted; a cell "
                  "without n is one seed, 0):", "",
                  "| recipe | HOTA | AssA | IDF1 | IDSW | ReID rank-1 | ReID mAP |", "|---|---|---|---|---|---|---|"]
        for name, label in [*ABLATION, ("no_bnneck_centred", "- BNNeck, its pooled feature centred by the training "
                                        "crops' mean (about what the BNNeck's running mean does for the full recipe)"),
                            ("finetune_after", "fine-tune recipe, post-BN features to the tracker")]:
            if name in ablation:
                results = ablation[name]
                cells = [summarise([r[m] for r in results], m == "IDSW") for m in (*METRICS, "rank1", "mAP")]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if why:
        lines += ["Why the fine-tune trails the zoo model: one change at a time from the fine-tune recipe, public "
                  "detections, pre-BN features (a cell without n is one seed, 0; the recipe's own row is every seed "
                  "run):", "", "| recipe | HOTA | AssA | IDF1 | IDSW | ReID rank-1 | ReID mAP |",
                  "|---|---|---|---|---|---|---|"]
        for name, label in WHY:
            if name in why:
                cells = [summarise([r[m] for r in why[name]], m == "IDSW") for m in (*METRICS, "rank1", "mAP")]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    command = " ".join(["python scripts/reid_for_tracking.py", *sys.argv[1:]])
    lines.append(f"Reproduce: `{command}` (runs and scores cached under --work, a cached row is not re-run; "
                 "`--only` trains only the variants named and reports the others where a run exists. The fine-tune "
                 "recipe and every ablated recipe ran seeds 0 1 2; the rows on why, seed 0: "
                 "`--seeds 0 --only VARIANT --no-write`, then this command to write the section)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
