"""`mot-reid export` and the exported backends, on real PETS09 crops and the real OSNet x0.25 weights.

Exports are made once per module (a few seconds each) and shared by the tests.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from mot_reid.cli import main
from mot_reid.embedding import build_embedder, load_path
from mot_reid.errors import UserError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")

FRAMES = 3  # real frames whose public-detection boxes (3 people each) are the crops
HALF_COSINE = 0.999  # the stated bound for --half exports (fp16 weights); fp32 exports must reach 0.9999


@pytest.fixture(scope="module")
def pets(shared_data):
    from mot_reid.mot_data import read_detections

    seq = shared_data / "mot/PETS09-S2L1"
    cap = cv2.VideoCapture(str(seq / "PETS09-S2L1.avi"))
    frames = np.stack([cap.read()[1] for _ in range(FRAMES)])
    cap.release()
    dets = read_detections(seq / "det/det.txt")
    return torch.from_numpy(frames), [dets[i + 1][0] for i in range(FRAMES)]


@pytest.fixture(scope="module")
def osnet(shared_data):
    return str(shared_data / "weights/osnet_x0_25_msmt17.pth")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, osnet):
    """{(format, half): path} of the OSNet embedder, made through the CLI."""
    out = tmp_path_factory.mktemp("exports")
    paths = {}
    for fmt, ext in (("onnx", "onnx"), ("openvino", "xml")):
        for half in (False, True):
            path = out / f"osnet{'-fp16' if half else ''}.{ext}"
            assert main(["export", "--reid", osnet, "--format", fmt, "--out", str(path)] + ["--half"] * half) == 0
            paths[fmt, half] = path
    return paths


def _cosines(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    a, b = np.concatenate(a), np.concatenate(b)
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("half", [False, True])
def test_exported_features_equal_torch_on_real_crops(pets, osnet, exports, fmt, half):
    frames, boxes = pets
    ref = load_path(osnet, "cpu")(frames, boxes)
    exported = build_embedder(str(exports[fmt, half]), "cpu")
    assert exported.info["backend"] == ("onnxruntime" if fmt == "onnx" else "openvino")
    got = exported(frames, boxes)
    assert [len(g) for g in got] == [len(b) for b in boxes] and sum(map(len, boxes)) == 9
    assert _cosines(ref, got).min() >= (HALF_COSINE if half else 0.9999)
    # Dynamic batch: one crop alone gives the row it got in the batch of all crops.
    crops = exported.crops(frames, boxes)
    alone = exported.extract(crops[:1])
    np.testing.assert_allclose(alone.numpy()[0], exported.extract(crops).numpy()[0], atol=1e-5)


@pytest.mark.slow
def test_metadata_round_trips_and_batchnorm_is_folded(exports, osnet):
    from mot_reid import __version__
    from mot_reid.runtime import META_KEY, OpenVinoExtract, onnx_metadata

    onnx_meta = json.loads(onnx_metadata(exports["onnx", False])[META_KEY])
    ov_meta = json.loads(OpenVinoExtract(exports["openvino", False], torch.device("cpu")).metadata[META_KEY])
    assert onnx_meta == ov_meta
    assert onnx_meta["source"] == osnet and onnx_meta["input_size"] == [256, 128]
    assert onnx_meta["mot_reid_version"] == __version__ and onnx_meta["precision"] == "fp32"
    assert onnx_meta["feature"].startswith("fc embedding") and len(onnx_meta["source_sha256"]) == 64
    half_meta = json.loads(onnx_metadata(exports["onnx", True])[META_KEY])
    assert half_meta["precision"] == "fp16"
    graph = onnx.load(str(exports["onnx", False])).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_mot_reid_checkpoint_exports_its_pre_bn_feature(pets, tmp_path, resnet18_checkpoint):
    """A `mot-reid train` file (ResNet18 with BatchNorms in the backbone): the pre-BN feature, BN folded."""
    _, model = resnet18_checkpoint
    assert main(["export", "--reid", str(tmp_path / "model.pt"), "--format", "onnx",
                 "--out", str(tmp_path / "model.onnx")]) == 0
    frames, boxes = pets
    ref = load_path(str(tmp_path / "model.pt"), "cpu")(frames[:1], boxes[:1])
    exported = build_embedder(str(tmp_path / "model.onnx"), "cpu")
    assert exported.input_size == (128, 64) and "pre-BN" in exported.info["feature"]
    assert _cosines(ref, exported(frames[:1], boxes[:1])).min() >= 0.9999
    assert not [n for n in onnx.load(str(tmp_path / "model.onnx")).graph.node if n.op_type == "BatchNormalization"]


@pytest.mark.slow
def test_tracks_of_exported_pipelines_equal_torch(shared_data, osnet, exports, tmp_path, monkeypatch):
    """60 real frames, public detections: torch, onnxruntime and openvino embedders give the same MOT rows.

    The features agree to cosine >= 0.9999, far inside every matching threshold, so no association
    decision can flip. `--backend openvino` with the .pth also checks the export-on-first-use cache."""
    seq = shared_data / "mot/PETS09-S2L1"
    monkeypatch.setenv("MOT_REID_CACHE", str(tmp_path / "cache"))
    runs = {"torch": ["--reid", osnet], "onnxruntime": ["--reid", str(exports["onnx", False])],
            "openvino": ["--reid", osnet, "--backend", "openvino"]}
    rows = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["track", str(seq / "PETS09-S2L1.avi"), "--detections", str(seq / "det/det.txt"),
                     "--max-frames", "60", "--out", str(out / "t.json"), "--mot-txt", str(out / "t.txt"),
                     "--no-progress", *extra]) == 0
        rows[name] = (out / "t.txt").read_text()
        embedder = json.loads((out / "t.json").read_text())["embedder"]
        assert embedder.get("backend", "torch") == name
    assert len(rows["torch"].splitlines()) > 200
    assert rows["onnxruntime"] == rows["torch"] and rows["openvino"] == rows["torch"]
    assert list((tmp_path / "cache/exports").glob("osnet_x0_25_msmt17-*-openvino.xml"))


@pytest.mark.slow
def test_damaged_or_wrong_files_are_one_line_exit_2(shared_data, exports, tmp_path, capsys):
    seq = shared_data / "mot/PETS09-S2L1"
    (tmp_path / "cut.onnx").write_bytes(exports["onnx", False].read_bytes()[:300_000])
    (tmp_path / "junk.xml").write_text("not an IR at all")
    (tmp_path / "cut.xml").write_text(exports["openvino", False].read_text()[:5000])
    (tmp_path / "cut.bin").write_bytes(exports["openvino", False].with_suffix(".bin").read_bytes())
    cases = [(["--reid", str(tmp_path / "cut.onnx")], "damaged or not an ONNX model"),
             (["--reid", str(tmp_path / "junk.xml")], "damaged or not an OpenVINO IR"),
             (["--reid", str(tmp_path / "cut.xml")], "damaged or not an OpenVINO IR"),
             (["--reid", str(exports["onnx", False]), "--backend", "openvino"], "use --backend onnxruntime"),
             (["--reid", str(exports["openvino", False]), "--backend", "onnxruntime"], "use --backend openvino"),
             (["--reid", "none", "--backend", "onnx"], "--backend")]
    for extra, match in cases:
        code = main(["track", str(seq / "PETS09-S2L1.avi"), "--detections", str(seq / "det/det.txt"),
                     "--max-frames", "2", "--out", str(tmp_path / "t.json"), "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and match in err[0], (extra, err)
        assert not (tmp_path / "t.json").exists()
    code = main(["export", "--reid", str(shared_data / "weights/osnet_x0_25_msmt17.pth"), "--format", "onnx",
                 "--out", str(tmp_path / "x.xml")])
    assert code == 2 and "must end in .onnx" in capsys.readouterr().err


def test_missing_runtime_names_the_extra(monkeypatch):
    from mot_reid.runtime import import_runtime

    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UserError, match=r'pip install "mot-reid\[onnx\]"'):
        import_runtime("onnxruntime")


def test_backend_option_reaches_batch_and_eval():
    from mot_reid.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["batch", "a.mp4", "--out-dir", "d", "--backend", "openvino"]).backend == "openvino"
    assert parser.parse_args(["eval", "seq", "--backend", "onnxruntime"]).backend == "onnxruntime"


@pytest.fixture(scope="module")
def yolo_onnx(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("yolo") / "yolov8n.onnx"
    assert main(["export", "--detector", str(shared_data / "weights/yolov8n.pt"), "--format", "onnx",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_ultralytics_onnx_detector_runs_in_track(shared_data, yolo_onnx, exports, tmp_path, capsys):
    from mot_reid.detection import DetectorSettings, YoloDetector, build_detector
    from trackers.distances import iou_matrix

    seq = shared_data / "mot/PETS09-S2L1"
    code = main(["track", str(seq / "PETS09-S2L1.avi"), "--detector", str(yolo_onnx), "--reid",
                 str(exports["onnx", False]), "--max-frames", "8", "--out", str(tmp_path / "t.json"),
                 "--no-progress"])
    doc = json.loads((tmp_path / "t.json").read_text())
    assert code == 0 and doc["detector"]["backend"] == "onnxruntime" and doc["summary"]["tracks"] >= 3
    # Same boxes as the .pt model on real frames (float rounding and letterbox aside).
    cap = cv2.VideoCapture(str(seq / "PETS09-S2L1.avi"))
    frames = [cap.read()[1] for _ in range(4)]
    settings = DetectorSettings(conf=0.25)
    torch_dets = YoloDetector(str(shared_data / "weights/yolov8n.pt"), "cpu", settings)(frames, [1, 2, 3, 4])
    onnx_dets = build_detector(str(yolo_onnx), "cpu", settings)(frames, [1, 2, 3, 4])
    for a, b in zip(torch_dets, onnx_dets, strict=True):
        assert len(a) and np.median(iou_matrix(a.xyxy, b.xyxy).max(1)) > 0.9
    # A detector export is refused as --reid and an embedder export as --detector, in one line each.
    capsys.readouterr()
    det = str(seq / "det/det.txt")
    for extra, match in ((["--reid", str(yolo_onnx), "--detections", det], "give it to --detector"),
                         (["--detector", str(exports["onnx", False]), "--reid", "none"], "give it to --reid")):
        code = main(["track", str(seq / "PETS09-S2L1.avi"), "--max-frames", "2", "--out", str(tmp_path / "e.json"),
                     "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and match in err[0], err
