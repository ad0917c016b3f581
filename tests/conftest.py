"""Shared fixtures. Real data lives in ../shared/data beside the repository (never copied in)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` relative to the repository root: real sequences and weights."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.fail(f"real test data not found at {path}; the repository expects ../shared beside it")
    return path


@pytest.fixture
def resnet18_checkpoint(tmp_path):
    """A `mot-reid train` model file (random ResNet18 BoT, 128x64 input, 5 ids) and the model it holds."""
    import torch

    from mot_reid import config
    from mot_reid.reid.model import CHECKPOINT_FORMAT, build_model
    from mot_reid.reid.recipe import ReIDRecipe

    recipe = config.load(ReIDRecipe, config.configs_dir() / "reid" / "cpu_resnet18.yaml",
                         ["model.pretrained=none", "input.size=[128,64]"])
    torch.manual_seed(0)
    model = build_model(recipe.model, 5).eval()
    path = tmp_path / "model.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "recipe": config.to_dict(recipe), "num_classes": 5,
                "model": model.state_dict(), "epoch": 1}, path)
    return path, model


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
