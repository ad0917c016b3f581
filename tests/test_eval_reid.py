"""Evaluation end to end: feature extraction, metrics, `mot-reid eval-reid` with a real (small) model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mot_reid import config
from mot_reid.cli import main
from mot_reid.reid.datasets import load_dataset
from mot_reid.reid.evaluate import evaluate_features, evaluate_model, extract_features
from mot_reid.reid.metrics import compute_distance, evaluate_ranking, re_ranking
from mot_reid.reid.model import CHECKPOINT_FORMAT, build_model
from mot_reid.reid.recipe import ReIDRecipe


def small_recipe() -> ReIDRecipe:
    recipe = ReIDRecipe()
    recipe.model.backbone = "resnet18"
    recipe.model.pretrained = "none"
    recipe.input.size = (64, 32)
    recipe.data.dataset = "market1501"
    recipe.data.test_batch_size = 8
    recipe.data.num_workers = 0
    return recipe


def person_like(path: Path, pid: int, seed: int) -> None:
    """A 64x32 image whose colours depend on the identity (upper/lower body), plus noise."""
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(pid).integers(0, 255, (2, 3))
    image = np.empty((64, 32, 3))
    image[:32], image[32:] = colours[0], colours[1]
    image = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def market_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("market") / "Market-1501-v15.09.15"
    seed = 0
    for pid in (1, 2, 3):
        for cam in (1, 2):
            person_like(root / "bounding_box_train" / f"{pid:04d}_c{cam}s1_000001_00.jpg", pid, seed := seed + 1)
    for pid in (10, 11, 12, 13):
        person_like(root / "query" / f"{pid:04d}_c1s1_000001_00.jpg", pid, seed := seed + 1)
        for cam in (1, 2, 3):
            person_like(root / "bounding_box_test" / f"{pid:04d}_c{cam}s1_000101_00.jpg", pid, seed := seed + 1)
    person_like(root / "bounding_box_test" / "0000_c4s1_000001_00.jpg", 99, 1000)  # distractor
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    recipe = small_recipe()
    model = build_model(recipe.model, num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "recipe": config.to_dict(recipe), "num_classes": 3,
                "model": model.state_dict(), "epoch": 0}, path)
    return path


def test_evaluate_features_equals_metrics_on_tensors():
    gen = torch.Generator().manual_seed(0)
    qf = torch.nn.functional.normalize(torch.randn(10, 8, generator=gen), dim=1)
    gf = torch.nn.functional.normalize(torch.randn(40, 8, generator=gen), dim=1)
    q_pids, g_pids = torch.arange(10) % 5, torch.arange(40) % 5
    q_cams, g_cams = torch.zeros(10, dtype=torch.long), torch.ones(40, dtype=torch.long)
    plain = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams)
    assert plain == evaluate_ranking(compute_distance(qf, gf), q_pids, g_pids, q_cams, g_cams)
    reranked = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, rerank=True, k1=5, k2=2, lambda_value=0.5)
    assert reranked == evaluate_ranking(re_ranking(qf, gf, 5, 2, 0.5), q_pids, g_pids, q_cams, g_cams)


def test_evaluate_model_matches_manual_pipeline(market_like, checkpoint):
    from mot_reid.reid.model import load_checkpoint_model

    model, recipe = load_checkpoint_model(checkpoint, "cpu")
    dataset = load_dataset(market_like, "market1501")
    got = evaluate_model(model, dataset, recipe, "cpu", feat="after")
    assert got["num_query"] == 4 and got["num_gallery"] == 13 and got["num_valid_queries"] == 4
    qf, qp, qc = extract_features(model, dataset.query, recipe, "cpu", "after")
    gf, gp, gc = extract_features(model, dataset.gallery, recipe, "cpu", "after", batch_size=5)
    assert torch.allclose(qf.norm(dim=1), torch.ones(len(qf)), atol=1e-5)
    expected = evaluate_ranking(compute_distance(qf, gf), qp, gp, qc, gc)
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6)
    before = evaluate_model(model, dataset, recipe, "cpu", feat="before", rerank=True)
    assert before["feat"] == "before" and before["rerank"] and 0 < before["mAP"] <= 1


def test_cli_prints_and_writes_json_cross_domain(market_like, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval-reid", "--checkpoint", str(checkpoint), "--data", str(market_like), "--device", "cpu",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R1 " in printed and "mAP " in printed and "mINP " in printed
    result = json.loads(out.read_text())
    m = result["metrics_percent"]
    assert 0 < m["mAP"] <= 100 and m["rank1"] <= m["rank5"] <= m["rank10"] == 100.0
    assert result["dataset"] == "market1501" and not result["cross_domain"] and result["feat"] == "after"
    assert result["recipe"]["model"]["backbone"] == "resnet18" and "torch" in result["versions"]
    assert len(m["cmc"]) == 13

    # The same images as a plain folder: a "different dataset" for the checkpoint -> cross-domain.
    folder = tmp_path / "folder"
    for split, src in (("query", "query"), ("gallery", "bounding_box_test")):
        (folder / split).mkdir(parents=True)
        for p in (market_like / src).iterdir():
            (folder / split / p.name).write_bytes(p.read_bytes())
    out2 = tmp_path / "cross.json"
    assert main(["eval-reid", "--checkpoint", str(checkpoint), "--data", str(folder), "--dataset", "folder",
                 "--device", "cpu", "--json", str(out2)]) == 0
    cross = json.loads(out2.read_text())
    assert cross["cross_domain"] and cross["trained_on"] == "market1501"
    assert cross["metrics_percent"]["mAP"] == pytest.approx(m["mAP"], abs=1e-3)  # same images, same numbers


def test_cli_bad_inputs_are_one_line_errors(market_like, checkpoint, tmp_path, capsys):
    not_ckpt = tmp_path / "x.pt"
    torch.save({"weights": 1}, not_ckpt)
    assert main(["eval-reid", "--checkpoint", str(not_ckpt), "--data", str(market_like), "--device", "cpu"]) == 2
    assert main(["eval-reid", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "none"),
                 "--device", "cpu"]) == 2
    broken_root = tmp_path / "broken" / "Market-1501-v15.09.15"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (broken_root / split).mkdir(parents=True)
        for p in (market_like / split).iterdir():
            (broken_root / split / p.name).write_bytes(p.read_bytes())
    (broken_root / "query" / "0010_c1s1_000001_00.jpg").write_bytes(b"\xff\xd8\xff garbage")
    capsys.readouterr()
    assert main(["eval-reid", "--checkpoint", str(checkpoint), "--data", str(broken_root), "--device", "cpu",
                 "--workers", "1"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("mot-reid eval-reid: error: cannot read image") and "0010_c1s1_000001_00.jpg" in last
