"""ReID evaluation: extract query/gallery features with a DataLoader, then rank and score them.

Cross-domain evaluation is the same call with a dataset other than the one the model was trained on.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from mot_reid.errors import UserError
from mot_reid.log import progress
from mot_reid.reid.datasets import ImageDataset, Item, ReIDDataset
from mot_reid.reid.metrics import compute_distance, evaluate_ranking, re_ranking
from mot_reid.reid.recipe import ReIDRecipe
from mot_reid.reid.transforms import build_test_transform


def _one_line(exc: UserError) -> UserError:
    """A UserError raised in a DataLoader worker comes back wrapped in the worker's traceback text."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return exc
    return UserError(lines[-1].split("UserError: ", 1)[-1])


@torch.no_grad()
def extract_features(model, items: list[Item], recipe: ReIDRecipe, device: torch.device | str, feat: str = "after",
                     batch_size: int | None = None, num_workers: int | None = None, desc: str = "features"):
    """(N, D) L2-normalised features (on `device`), pids and camids of `items`, in item order."""
    device = torch.device(device)
    loader = DataLoader(
        ImageDataset(items, build_test_transform(recipe.input)),
        batch_size=batch_size or recipe.data.test_batch_size,
        shuffle=False,
        num_workers=recipe.data.num_workers if num_workers is None else num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    feats, pids, camids = [], [], []
    try:
        for images, pid, camid, _ in progress(loader, desc=desc, unit="batch"):
            feats.append(model.extract(images.to(device, non_blocking=True), feat=feat).float())
            pids.append(pid)
            camids.append(camid)
    except UserError as exc:
        raise _one_line(exc) from None
    finally:
        model.train(was_training)
    if not feats:
        raise UserError("no images to extract features from")
    return torch.cat(feats), torch.cat(pids), torch.cat(camids)


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, rerank: bool = False, k1: int = 20, k2: int = 6,
                      lambda_value: float = 0.3, max_rank: int = 50) -> dict:
    """Metrics of query/gallery features: squared Euclidean distances, or k-reciprocal re-ranked ones."""
    if rerank:
        distmat = re_ranking(qf, gf, k1=k1, k2=k2, lambda_value=lambda_value, device=qf.device)
    else:
        distmat = compute_distance(qf, gf)
    return evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)


def evaluate_model(model, dataset: ReIDDataset, recipe: ReIDRecipe, device: torch.device | str, feat: str = "after",
                   rerank: bool = False, batch_size: int | None = None, num_workers: int | None = None) -> dict:
    """rank1/rank5/rank10/mAP/mINP (fractions) and cmc of `model` on `dataset`'s query and gallery."""
    if not dataset.query or not dataset.gallery:
        raise UserError(f"{dataset.name} at {dataset.root} has no query/gallery split to evaluate on")
    qf, q_pids, q_camids = extract_features(model, dataset.query, recipe, device, feat, batch_size, num_workers,
                                            desc="query")
    gf, g_pids, g_camids = extract_features(model, dataset.gallery, recipe, device, feat, batch_size, num_workers,
                                            desc="gallery")
    test = recipe.test
    metrics = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, rerank=rerank, k1=test.rerank_k1,
                                k2=test.rerank_k2, lambda_value=test.rerank_lambda)
    metrics.update(num_query=len(qf), num_gallery=len(gf), feat=feat, rerank=rerank)
    return metrics
