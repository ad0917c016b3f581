"""PNG plots of a training history: loss parts, learning rate, rank-1/mAP per evaluation, CMC curve.

`history` is what `train.train` records: {"epochs": [{"epoch", "lr", "loss", "id", ...}],
"evals": [{"epoch", "rank1", "mAP", "cmc": [...]}]}. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mot_reid.atomic import atomic_path  # noqa: E402

LOSS_PARTS = ("loss", "id", "triplet", "center")


def _save(fig, path: Path, integer_x: bool = True) -> Path:
    if integer_x:  # epochs
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: dict, output_dir: str | Path) -> list[Path]:
    """Write losses.png, lr.png and (when there were evaluations) eval.png and cmc.png."""
    output_dir = Path(output_dir)
    epochs = history.get("epochs", [])
    evals = history.get("evals", [])
    written = []
    if epochs:
        x = [e["epoch"] for e in epochs]
        parts = [p for p in LOSS_PARTS if p in epochs[0]]
        fig, axes = plt.subplots(1, len(parts), figsize=(3.2 * len(parts), 3), squeeze=False)
        for ax, part in zip(axes[0], parts, strict=True):
            ax.plot(x, [e[part] for e in epochs], marker=".")
            ax.set_title("total loss" if part == "loss" else f"{part} loss")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        written.append(_save(fig, output_dir / "losses.png"))

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.step(x, [e["lr"] for e in epochs], where="post")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        written.append(_save(fig, output_dir / "lr.png"))
    if evals:
        fig, ax = plt.subplots(figsize=(5, 3))
        ex = [e["epoch"] for e in evals]
        for key, label in (("rank1", "rank-1"), ("mAP", "mAP")):
            ax.plot(ex, [100 * e.get(key, float("nan")) for e in evals], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, output_dir / "eval.png"))

        cmc = evals[-1].get("cmc", [])
        if cmc:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], marker=".")
            ax.set_xlabel("rank")
            ax.set_ylabel("matching rate (%)")
            ax.set_title(f"CMC after epoch {evals[-1]['epoch']}")
            ax.grid(alpha=0.3)
            written.append(_save(fig, output_dir / "cmc.png"))
    return written
