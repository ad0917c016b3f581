"""The fine-tuned BoT model shipped in assets/: `--reid auto`'s offline default, pre-BN features, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mot_reid import embedding
from mot_reid.embedding import build_embedder, shipped_checkpoint
from mot_reid.reid.model import load_checkpoint_model

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "pets09_s2l1_demo.mp4"


@pytest.fixture(scope="module")
def frames():
    cap = cv2.VideoCapture(str(DEMO))
    out = np.stack([cap.read()[1] for _ in range(2)])
    cap.release()
    return out


# PETS09-S2L1 ground truth (0-based xyxy) of pedestrians 9 and 15 in the demo's frames 1 and 2, and a box
# half outside frame 1.
BOXES = [np.array([[498, 157, 529.03, 232.17], [257, 218, 289.91, 306.70], [-20, 400, 40, 560]], np.float32),
         np.array([[496, 157, 527.03, 232.17], [262, 217, 294.77, 305.51]], np.float32)]


def test_auto_uses_the_shipped_model_and_its_pre_bn_feature(frames, monkeypatch):
    monkeypatch.delenv("MOT_REID_CHECKPOINT", raising=False)
    path = shipped_checkpoint()
    assert path is not None and path.stat().st_size < 5_000_000
    emb = build_embedder("auto", "cpu")
    assert emb.info == {"kind": "mot-reid", "weights": str(path), "feature": "before (pre-BN)",
                        "backbone": "osnet_x0_25"}
    ours = emb(torch.from_numpy(frames), BOXES)
    model, recipe = load_checkpoint_model(path)
    with torch.inference_mode():
        direct = model.extract(emb.crops(torch.from_numpy(frames), BOXES).contiguous(), feat="before").numpy()
    np.testing.assert_allclose(np.concatenate(ours), direct, atol=1e-4)
    assert ours[0].shape == (3, 128) and recipe.input.size == (256, 128)
    # Each pedestrian one frame later is far closer to themself than to the other one (measured 0.90 / 0.86
    # against 0.27 / 0.35).
    sim = ours[0][:2] @ ours[1].T
    assert sim[0, 0] - sim[0, 1] > 0.3 and sim[1, 1] - sim[1, 0] > 0.3, sim
    after = build_embedder("auto", "cpu", feature="after")
    assert after.info["feature"] == "after (post-BN)"
    assert not np.allclose(after(torch.from_numpy(frames), BOXES)[0], ours[0], atol=1e-3)


def test_without_the_shipped_file_auto_offline_is_motion_only(monkeypatch, caplog):
    from mot_reid.detection import online

    monkeypatch.delenv("MOT_REID_CHECKPOINT", raising=False)
    monkeypatch.setattr(embedding, "SHIPPED_REID", "absent.pt")  # a checkout without the asset
    assert shipped_checkpoint() is None
    if embedding._torchvision_cached() or online(host="download.pytorch.org"):
        pytest.skip("ImageNet ResNet50 is available here; auto would use it")
    assert build_embedder("auto", "cpu") is None
    assert any("motion only" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_readme_demo_offline_names_the_shipped_embedder(tmp_path):
    """The README's demo command (cut to 30 frames) on this offline machine: the mission's own pipeline."""
    env = {k: v for k, v in os.environ.items() if k != "MOT_REID_CHECKPOINT"}
    out = tmp_path / "tracks.json"
    done = subprocess.run([sys.executable, "-m", "mot_reid.cli", "track", str(DEMO.relative_to(REPO)), "--out",
                           str(out), "--max-frames", "30", "--no-progress"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["embedder"]["kind"] == "mot-reid" and doc["embedder"]["feature"] == "before (pre-BN)"
    assert Path(doc["embedder"]["weights"]).name == embedding.SHIPPED_REID
    assert doc["tracker"]["name"] == "mot-reid" and doc["tracks"]
