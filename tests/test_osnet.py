"""OSNet written here loads the torchreid model-zoo files strictly and embeds real people sensibly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mot_reid.embedding import load_path
from mot_reid.errors import UserError
from mot_reid.reid.osnet import WIDTHS, OSNet, load_osnet, osnet_from_state_dict

FILES = ("osnet_x0_25_msmt17.pth", "osnet_x0_25_market1501.pth")


@pytest.mark.parametrize("name,classes", list(zip(FILES, (1041, 751), strict=True)))
def test_zoo_files_load_strictly(shared_data, name, classes):
    model, variant = load_osnet(shared_data / "weights" / name)  # strict=True inside
    assert variant == "x0_25" and model.classifier.out_features == classes
    with torch.no_grad():
        feat = model(torch.randn(2, 3, 256, 128))
    assert feat.shape == (2, 512) and torch.all(feat >= 0)  # fc head ends in ReLU


def test_width_is_read_from_the_state_dict():
    state = OSNet(WIDTHS["x0_5"], num_classes=10).state_dict()
    model, variant = osnet_from_state_dict(state)
    assert variant == "x0_5" and model.classifier.out_features == 10


def test_mismatched_state_dict_is_user_error(shared_data):
    state = torch.load(shared_data / "weights" / FILES[0], weights_only=True)
    del state["conv5.conv.weight"]
    with pytest.raises(UserError, match="do not match"):
        osnet_from_state_dict(state)


@pytest.fixture(scope="module")
def pets_gt_crops(shared_data):
    """Frames 1 and 40 of PETS09-S2L1 with their ground-truth boxes (x1,y1,x2,y2) and ids."""
    seq = shared_data / "mot/PETS09-S2L1"
    gt = np.loadtxt(seq / "gt/gt.txt", delimiter=",")
    cap = cv2.VideoCapture(str(seq / "PETS09-S2L1.avi"))
    frames = {}
    for i in range(1, 41):
        frames[i] = cap.read()[1]
    out = {}
    for f in (1, 40):
        rows = gt[gt[:, 0] == f]
        xyxy = rows[:, 2:6].copy()
        xyxy[:, :2] -= 1
        xyxy[:, 2:] += xyxy[:, :2]
        out[f] = (frames[f], xyxy.astype(np.float32), rows[:, 1].astype(int))
    return out


@pytest.mark.parametrize("name", FILES)
def test_same_person_closer_than_different_people(shared_data, pets_gt_crops, name):
    emb = load_path(str(shared_data / "weights" / name), "cpu")
    (fa, ba, ia), (fb, bb, ib) = pets_gt_crops[1], pets_gt_crops[40]
    ea = emb(torch.from_numpy(fa[None]), [ba])[0]
    eb = emb(torch.from_numpy(fb[None]), [bb])[0]
    sim = ea @ eb.T
    same = sim[ia[:, None] == ib[None, :]]
    diff = sim[ia[:, None] != ib[None, :]]
    assert len(same) >= 3
    assert same.mean() > diff.mean() + 0.1
    # Every person of frame 1 still present at frame 40 is nearest to themself.
    for row, pid in enumerate(ia):
        if pid in ib:
            assert ib[sim[row].argmax()] == pid


def test_fused_batchnorm_gives_the_same_embedding(shared_data):
    """Folding the BatchNorms into the convolutions (the embedder's speed-up) keeps the function."""
    import copy

    from mot_reid.reid.osnet import fuse_batchnorm

    model, _ = load_osnet(shared_data / "weights" / FILES[0])
    fused = fuse_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in fused.modules())
    x = torch.randn(4, 3, 256, 128)
    with torch.inference_mode():
        ref, got = model(x), fused(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="eval-mode"):
        fuse_batchnorm(OSNet(WIDTHS["x0_25"]).train())
