"""The batched roi_align embedder: crops match a plain cut-and-resize, features are L2-normalised per box."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mot_reid.embedding import Embedder, build_embedder, torchvision_embedder
from mot_reid.errors import UserError
from mot_reid.reid.osnet import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def frames():
    cap = cv2.VideoCapture("assets/pets09_s2l1_demo.mp4")
    out = np.stack([cap.read()[1] for _ in range(2)])
    cap.release()
    return out


BOXES = [np.array([[548, 221, 615, 355], [100.5, 200, 140, 300]], np.float32), np.zeros((0, 4), np.float32)]


def _embedder():
    torch.manual_seed(0)
    return torchvision_embedder("cpu", weights=None, arch="resnet18")


def test_roi_align_crop_matches_cut_and_resize(frames):
    emb = _embedder()
    crops = emb.crops(torch.from_numpy(frames), BOXES)
    assert crops.shape == (2, 3, 256, 128)
    x1, y1, x2, y2 = BOXES[0][0].astype(int)
    ref = cv2.resize(frames[0][y1:y2, x1:x2], (128, 256), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    got = crops[0].permute(1, 2, 0).numpy()
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.95


def test_features_per_frame_normalised_and_batch_independent(frames):
    emb = _embedder()
    feats = emb(torch.from_numpy(frames), BOXES)
    assert [f.shape for f in feats] == [(2, 512), (0, 512)]
    np.testing.assert_allclose(np.linalg.norm(feats[0], axis=1), 1.0, atol=1e-5)
    alone = emb(torch.from_numpy(frames[:1]), [BOXES[0][1:]])[0]
    np.testing.assert_allclose(alone[0], feats[0][1], atol=1e-4)  # eval mode: no batch coupling


def test_boxes_outside_the_frame_are_clipped(frames):
    emb = _embedder()
    inside = emb.crops(torch.from_numpy(frames[:1]), [np.array([[700, 500, 768, 576]], np.float32)])
    outside = emb.crops(torch.from_numpy(frames[:1]), [np.array([[700, 500, 900, 700]], np.float32)])
    torch.testing.assert_close(inside, outside, atol=1e-3, rtol=0)


def test_no_boxes_anywhere_skips_the_model(frames):
    calls = []
    emb = Embedder(lambda x: calls.append(x) or x.mean((2, 3)), (256, 128), "cpu")
    assert [f.shape[0] for f in emb(torch.from_numpy(frames), [np.zeros((0, 4))] * 2)] == [0, 0]
    assert calls == []


def test_reid_choices(tmp_path, monkeypatch):
    assert build_embedder("none", "cpu") is None
    with pytest.raises(UserError, match="not found"):
        build_embedder(str(tmp_path / "missing.pth"), "cpu")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read"):
        build_embedder(str(tmp_path / "bad.pth"), "cpu")
    monkeypatch.setenv("MOT_REID_CHECKPOINT", str(tmp_path / "gone.pth"))
    with pytest.raises(UserError, match="configured ReID checkpoint not found"):
        build_embedder("auto", "cpu")


def test_osnet_file_via_auto_checkpoint(shared_data):
    emb = build_embedder("auto", "cpu", auto_checkpoint=str(shared_data / "weights/osnet_x0_25_msmt17.pth"))
    assert emb.info["kind"] == "osnet"


def test_osnet_features_match_torchreid_style_crops(frames, shared_data):
    """The features peers compute (cut the box, cv2 bilinear resize to 256x128, RGB, ImageNet
    normalisation, one box at a time) are what the batched roi_align path gives for pixel-aligned boxes."""
    from mot_reid.embedding import load_path

    emb = load_path(str(shared_data / "weights" / "osnet_x0_25_msmt17.pth"), "cpu")
    boxes = np.array([[548, 221, 615, 355], [100, 200, 140, 300], [300, 100, 360, 260]], np.float32)
    ours = emb(torch.from_numpy(frames[:1]), [boxes])[0]
    refs = []
    for x1, y1, x2, y2 in boxes.astype(int):
        ref = cv2.resize(frames[0][y1:y2, x1:x2], (128, 256), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
        refs.append((ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD))
    with torch.inference_mode():
        ref_feats = emb.extract(torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float())
    ref_feats = torch.nn.functional.normalize(ref_feats, dim=1).numpy()
    assert ((ours * ref_feats).sum(1) > 0.999).all()


def test_fast_osnet_embedder_matches_the_plain_model(frames, shared_data):
    """The embedder's fused, channels-last OSNet gives the features of the plain NCHW model on the same crops."""
    from mot_reid.embedding import load_path
    from mot_reid.reid.osnet import load_osnet

    weights = shared_data / "weights" / "osnet_x0_25_msmt17.pth"
    emb = load_path(str(weights), "cpu")
    plain, _ = load_osnet(weights)
    ours = emb(torch.from_numpy(frames), BOXES)
    with torch.inference_mode():
        crops = emb.crops(torch.from_numpy(frames), BOXES)
        ref = torch.nn.functional.normalize(plain.eval()(crops), dim=1).numpy()
    np.testing.assert_allclose(np.concatenate(ours), ref, atol=1e-4)


def test_mot_reid_checkpoint_gives_pre_bn_features_at_the_recipe_input_size(frames, tmp_path, resnet18_checkpoint):
    """A `mot-reid train` model file: the embedder uses its recipe's input size and the pre-BN feature."""
    from mot_reid.embedding import load_path

    _, model = resnet18_checkpoint
    emb = load_path(str(tmp_path / "model.pt"), "cpu")
    assert emb.info["kind"] == "mot-reid" and emb.info["feature"].startswith("before")
    ours = emb(torch.from_numpy(frames[:1]), BOXES[:1])[0]
    crops = emb.crops(torch.from_numpy(frames[:1]), BOXES[:1])
    assert crops.shape[-2:] == (128, 64)
    with torch.inference_mode():
        ref = model.extract(crops, feat="before").numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")  # neither OSNet nor ours: one line
    with pytest.raises(UserError, match="not a mot-reid ReID checkpoint"):
        load_path(str(tmp_path / "other.pt"), "cpu")


@pytest.mark.slow
def test_yolo_weights_as_reid_name_the_accepted_formats(shared_data):
    # A pickled Ultralytics model: torch's weights_only refusal must become one line naming what --reid takes.
    with pytest.raises(UserError, match="not a ReID checkpoint.*torchreid OSNet") as info:
        build_embedder(str(shared_data / "weights/yolov8n.pt"), "cpu")
    assert "\n" not in str(info.value)
