"""Model shapes (last stride 1/2, BNNeck/none), feature extraction, ResNet50-IBN-a structure,
pretrained weights (PATH, ImageNet download path) and checkpoint loading/refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from mot_reid import config
from mot_reid.errors import UserError
from mot_reid.reid.backbones import BACKBONES, IBN, build_backbone, imagenet_url
from mot_reid.reid.model import CHECKPOINT_FORMAT, build_model, load_checkpoint_model
from mot_reid.reid.recipe import ModelConfig, ReIDRecipe

IMAGES = torch.randn(2, 3, 64, 32)


def small(**kw) -> ModelConfig:
    return ModelConfig(**{"backbone": "resnet18", "pretrained": "none", **kw})


@pytest.mark.parametrize(("last_stride", "map_size"), [(1, (4, 2)), (2, (2, 1))])
def test_last_stride_sets_the_final_map_size(last_stride, map_size):
    trunk, channels = build_backbone("resnet18", last_stride, "none")
    assert channels == 512
    assert trunk(IMAGES).shape == (2, 512, *map_size)


@pytest.mark.parametrize("name", ["resnet101", "resnet152", "resnext50", "resnet34"])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_every_backbone_builds_with_either_last_stride(name, last_stride):
    with torch.device("meta"):  # structure only: no memory, no init cost
        trunk, channels = build_backbone(name, last_stride, "none")
        out = trunk(torch.empty(1, 3, 256, 128))
    assert channels == (512 if name == "resnet34" else 2048)
    assert out.shape[-2:] == ((16, 8) if last_stride == 1 else (8, 4))


def test_bnneck_head():
    model = build_model(small(neck="bnneck"), num_classes=751).train()
    logits, feat = model(IMAGES)
    assert logits.shape == (2, 751) and feat.shape == (2, 512)
    assert model.classifier.bias is None
    assert not model.bottleneck.bias.requires_grad and torch.all(model.bottleneck.bias == 0)
    assert model.classifier.weight.std().item() == pytest.approx(0.001, rel=0.1)
    # the classifier sees the BN'd feature, the metric losses the pooled one
    model.eval()
    before, after = model(IMAGES)
    assert torch.allclose(before, model.pool(model.backbone(IMAGES)).flatten(1))
    assert torch.allclose(after, model.bottleneck(before))


def test_no_neck_is_a_biased_classifier_on_the_pooled_feature():
    model = build_model(small(neck="none"), num_classes=5).train()
    logits, feat = model(IMAGES)
    assert model.bottleneck is None and model.classifier.bias is not None
    assert torch.allclose(logits, model.classifier(feat))
    model.eval()
    assert torch.equal(model.extract(IMAGES, "before"), model.extract(IMAGES, "after"))


@pytest.mark.parametrize("feat", ["before", "after"])
def test_extract_is_l2_normalised_float(feat):
    model = build_model(small(), num_classes=5).eval()
    out = model.extract(IMAGES, feat)
    assert out.shape == (2, 512) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_resnet50_ibn_a_structure():
    trunk, channels = build_backbone("resnet50_ibn_a", 1, "none")
    assert channels == 2048
    for layer in (trunk.layer1, trunk.layer2, trunk.layer3):
        for block in layer:
            assert isinstance(block.bn1, IBN)
            width = block.conv1.out_channels
            assert block.bn1.IN.num_features == width // 2 and block.bn1.BN.num_features == width - width // 2
            assert block.bn1.IN.affine
            assert isinstance(block.bn2, nn.BatchNorm2d)
    assert all(isinstance(block.bn1, nn.BatchNorm2d) for block in trunk.layer4)
    # the release weights' key names
    assert "layer1.0.bn1.IN.weight" in trunk.state_dict() and "layer3.5.bn1.BN.running_mean" in trunk.state_dict()
    assert trunk.eval()(torch.randn(1, 3, 64, 32)).shape == (1, 2048, 4, 2)


def test_ibn_normalises_halves_separately():
    ibn = IBN(8).eval()
    x = torch.randn(2, 8, 5, 5) * 3 + 1
    out = ibn(x)
    # instance-normalised half: zero mean per sample and channel
    assert torch.allclose(out[:, :4].mean(dim=(2, 3)), torch.zeros(2, 4), atol=1e-5)
    # batch-norm half in eval mode with fresh running stats is (x - 0) / sqrt(1 + eps)
    assert torch.allclose(out[:, 4:], x[:, 4:] / (1 + 1e-5) ** 0.5, atol=1e-5)


def test_pretrained_path_loads_torchvision_weights(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which is ignored
    trunk, _ = build_backbone("resnet18", 1, str(path))
    assert torch.equal(trunk.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(trunk.bn1.running_var, reference.bn1.running_var)


def test_pretrained_path_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)  # same names, other shapes
    with pytest.raises(UserError, match="do not fit") as err:
        build_backbone("resnet18", 1, str(path))
    assert "\n" not in str(err.value)


def test_torchreid_resnet_state_dict_loads_with_a_key_report(tmp_path):
    from mot_reid.reid.backbones import load_into, read_state_dict

    reference = torchvision.models.resnet18()
    state = {f"module.{k}": v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state["module.classifier.weight"] = torch.randn(751, 512)  # torchreid's ID head: dropped
    path = tmp_path / "torchreid_r18.pth"
    torch.save({"state_dict": state, "epoch": 60}, path)
    trunk, _ = build_backbone("resnet18", 1, "none")
    counts = load_into(trunk, read_state_dict(path), str(path))
    assert counts == {"loaded": len(trunk.state_dict()), "missing": 0, "unexpected": 0}
    assert torch.equal(trunk.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


@pytest.mark.slow
def test_osnet_backbone_loads_the_torchreid_zoo_file():
    from mot_reid.reid.osnet import load_osnet

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "osnet_x0_25_msmt17.pth"
    trunk, channels = build_backbone("osnet_x0_25", 1, str(path))
    zoo, _ = load_osnet(path)
    assert channels == 128
    assert torch.equal(trunk.conv4[1].conv2a.conv2.weight, zoo.conv4[1].conv2a.conv2.weight)
    x = torch.randn(2, 3, 256, 128)
    assert torch.allclose(trunk.eval()(x), zoo.feature_maps(x))
    with pytest.raises(UserError, match="none of its") as err:  # an OSNet file is foreign to a ResNet
        build_backbone("resnet18", 1, str(path))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_osnet_embedding_layer_starts_from_exactly_the_zoo_feature(caplog):
    """`model.embedding_layer`: the zoo model's fc embedding stays under the BNNeck and loads with the file."""
    from mot_reid.reid.osnet import load_osnet

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "osnet_x0_25_msmt17.pth"
    with caplog.at_level("INFO"):
        trunk, channels = build_backbone("osnet_x0_25", 1, str(path), embedding_layer=True)
    zoo, _ = load_osnet(path)
    assert channels == 512 and "0 missing" in caplog.text
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        assert torch.allclose(trunk.eval()(x).flatten(1), zoo.eval()(x), atol=1e-6)
    with pytest.raises(UserError, match="embedding_layer is for OSNet"):
        build_backbone("resnet18", 1, "none", embedding_layer=True)


def test_pretrained_path_missing_or_garbage(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_backbone("resnet18", 1, str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        build_backbone("resnet18", 1, str(bad))


def test_imagenet_weights_come_from_torchvision_urls():
    for name in (b for b in BACKBONES if not b.startswith("osnet_")):  # OSNet has no ImageNet download
        assert imagenet_url(name).startswith("https://")
    assert imagenet_url("resnet50") == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url


def test_imagenet_download_failure_is_one_line(tmp_path, monkeypatch):
    # An unreachable proxy makes the download fail the same way on any machine.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError, match="cannot download ImageNet weights for resnet18") as err:
        build_backbone("resnet18", 1, "imagenet")
    assert "\n" not in str(err.value) and "pretrained=none" in str(err.value)


def write_checkpoint(path, recipe: ReIDRecipe, num_classes: int, state: dict) -> None:
    torch.save({"format": CHECKPOINT_FORMAT, "recipe": config.to_dict(recipe), "num_classes": num_classes,
                "model": state, "epoch": 3}, path)


def test_load_checkpoint_model_rebuilds_from_the_saved_recipe(tmp_path):
    recipe = ReIDRecipe(model=small(last_stride=2, neck="bnneck"))
    model = build_model(recipe.model, 7)
    write_checkpoint(tmp_path / "model.pt", recipe, 7, model.state_dict())
    loaded, loaded_recipe = load_checkpoint_model(tmp_path / "model.pt")
    assert not loaded.training and loaded_recipe.model.last_stride == 2
    model.eval()
    assert torch.equal(loaded.extract(IMAGES, "after"), model.extract(IMAGES, "after"))


def test_load_checkpoint_refuses_foreign_files_and_mismatched_weights(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a mot-reid ReID checkpoint"):
        load_checkpoint_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint_model(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint_model(tmp_path / "missing.pt")
    # recipe says resnet34, weights are resnet18's
    state = build_model(small(), 7).state_dict()
    write_checkpoint(tmp_path / "mixed.pt", ReIDRecipe(model=small(backbone="resnet34")), 7, state)
    with pytest.raises(UserError, match="another architecture") as err:
        load_checkpoint_model(tmp_path / "mixed.pt")
    assert "\n" not in str(err.value)


def test_a_mot_reid_checkpoint_can_seed_a_backbone(tmp_path):
    recipe = ReIDRecipe(model=small())
    model = build_model(recipe.model, 7)
    write_checkpoint(tmp_path / "model.pt", recipe, 7, model.state_dict())
    trunk, _ = build_backbone("resnet18", 1, str(tmp_path / "model.pt"))
    assert torch.equal(trunk.layer4[0].conv1.weight, model.backbone.layer4[0].conv1.weight)
