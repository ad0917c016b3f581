"""Export the embedder (ONNX / OpenVINO IR) and the detector (through Ultralytics) for other runtimes.

The embedder is exported exactly as the tracker runs it: the module `mot_reid.embedding` builds (OSNet
with BatchNorms folded; a `mot-reid train` model's pre-BN pooled feature), eval mode, with the
L2 normalisation inside the graph. Input: `crops`, float32 (N, 3, H, W), RGB, already normalised as
`(pixel / 255 - mean) / std` with the mean/std in the metadata (the runtime embedder crops with the
same roi_align code as the torch one, so cropping is not duplicated in the graph). Output: `features`
(N, D), float32, L2-normalised. The batch axis N is dynamic. The metadata (ONNX `metadata_props` /
OpenVINO `rt_info`, key `mot_reid`, one JSON object) names the source checkpoint, input size, mean/std,
feature kind, precision and the mot-reid version.

`--half`: fp16 weights and arithmetic inside the ONNX graph (inputs/outputs stay fp32); OpenVINO stores
fp16 weights (`compress_to_fp16`) and computes in fp32 on the CPU.

The detector goes through Ultralytics' own `YOLO(...).export(...)` (dynamic batch for onnx/openvino,
so the pipeline's frame batches and live streams' single frames both run).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

from mot_reid import __version__
from mot_reid.atomic import atomic_path
from mot_reid.errors import UserError
from mot_reid.log import logger
from mot_reid.runtime import META_FORMAT, META_KEY, import_runtime

REID_FORMATS = ("onnx", "openvino")
DETECTOR_FORMATS = ("onnx", "openvino", "engine")
OPSET = 17
BACKEND_FORMAT = {"onnxruntime": "onnx", "tensorrt": "onnx", "openvino": "openvino"}  # embedder file per backend
DETECTOR_BACKEND_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "engine"}


class _Feature(torch.nn.Module):
    """The embedder's extract + the L2 normalisation it applies, as one graph."""

    def __init__(self, extract: torch.nn.Module, half: bool):
        super().__init__()
        self.net = copy.deepcopy(extract).to(memory_format=torch.contiguous_format)
        self.half = half
        if half:
            self.net.half()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.half() if self.half else crops
        return F.normalize(self.net(x).float().flatten(1), dim=1)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_reid(weights: str | Path, fmt: str, out: str | Path | None = None, half: bool = False) -> Path:
    """Write the embedder of `weights` (a `--reid` file) as ONNX or OpenVINO IR; returns the file written."""
    from mot_reid.embedding import load_path

    if fmt not in REID_FORMATS:
        raise UserError(f"--reid exports to {' or '.join(REID_FORMATS)}, not {fmt!r}")
    import_runtime("onnxruntime" if fmt == "onnx" else "openvino")
    try:
        import onnx
    except ImportError:
        raise UserError('exporting needs the onnx package: pip install "mot-reid[onnx]"') from None
    embedder = load_path(str(weights), "cpu")
    if not isinstance(embedder.extract, torch.nn.Module):
        raise UserError(f"{weights}: this embedder cannot be exported (not a torch module)")
    out = Path(out) if out else Path(Path(weights).stem + (".onnx" if fmt == "onnx" else ".xml"))
    expected = ".onnx" if fmt == "onnx" else ".xml"
    if out.suffix.lower() != expected:
        raise UserError(f"--out for --format {fmt} must end in {expected}: {out}")
    meta = {"format": META_FORMAT, "source": str(weights), "source_sha256": _sha256(weights),
            "kind": embedder.info.get("kind"), "feature": f"{embedder.info.get('feature')}, L2-normalised",
            "input_size": list(embedder.input_size), "input": "crops: float32 N x 3 x H x W, RGB, (x/255 - mean)/std",
            "mean": list(embedder.mean), "std": list(embedder.std), "precision": "fp16" if half else "fp32",
            "mot_reid_version": __version__, "torch_version": torch.__version__}
    module = _Feature(embedder.extract, half and fmt == "onnx").eval()
    dummy = torch.zeros(2, 3, *embedder.input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        # The TorchScript exporter in eval mode with constant folding folds every BatchNorm into its conv.
        # It is the exporter that needs no extra package (the dynamo one needs onnxscript): its deprecation
        # warning is ours to track, not the user's.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (dummy,), str(onnx_path), dynamo=False, opset_version=OPSET,
                              input_names=["crops"], output_names=["features"], do_constant_folding=True,
                              dynamic_axes={"crops": {0: "batch"}, "features": {0: "batch"}})
        model = onnx.load(str(onnx_path))
        left = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
        if left:  # a layer the exporter could not fold: slower, and not the graph we promise
            raise RuntimeError(f"{left} BatchNormalization nodes left in the exported graph")
        if fmt == "onnx":
            entry = model.metadata_props.add()
            entry.key, entry.value = META_KEY, json.dumps(meta)
            with atomic_path(out) as target:
                onnx.save(model, str(target))
        else:
            _save_openvino(onnx_path, out, meta, half)
    logger.info("exported %s -> %s (%s, %s)", weights, out, fmt, meta["precision"])
    return out


def _save_openvino(onnx_path: Path, out: Path, meta: dict, half: bool) -> None:
    ov = import_runtime("openvino")
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(meta), META_KEY)
    tmp = onnx_path.with_name("model.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=half)  # the default would compress fp32 exports too
    # .bin first: a reader that finds the new .xml finds its weights beside it.
    os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))
    os.replace(tmp, out)


def export_detector(weights: str | Path, fmt: str, out: str | Path | None = None, half: bool = False,
                    imgsz: int = 640) -> Path:
    """Ultralytics' own export of YOLO `weights`; the result is moved to `out` (default: Ultralytics' name, here)."""
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if fmt not in DETECTOR_FORMATS:
        raise UserError(f"--detector exports to {', '.join(DETECTOR_FORMATS)}, not {fmt!r}")
    if fmt in ("onnx", "openvino"):
        import_runtime("onnxruntime" if fmt == "onnx" else "openvino")
    if fmt == "engine" and not torch.cuda.is_available():
        raise UserError("--format engine (TensorRT) is built on a CUDA GPU, and none is available here")
    weights = Path(weights)
    if not weights.is_file():
        raise UserError(f"detector weights not found: {weights}")
    suffix = {"onnx": ".onnx", "openvino": "_openvino_model", "engine": ".engine"}[fmt]
    out = Path(out) if out else Path(weights.stem + suffix)
    if not out.name.endswith(suffix):  # Ultralytics tells the runtime from this ending
        raise UserError(f"--out for --format {fmt} must end in {suffix}: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    precision = ({"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}) if half else {}
    # Ultralytics writes beside the weights (maybe a read-only folder): export a copy in a folder beside `out`.
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        local = Path(tmp) / weights.name
        shutil.copy2(weights, local)
        try:
            model = YOLO(str(local), task="detect")
            kwargs = {"dynamic": True} if fmt != "engine" else {"dynamic": True, "batch": 16}
            exported = Path(model.export(format=fmt, imgsz=imgsz, device=0 if fmt == "engine" else "cpu",
                                         verbose=False, **kwargs, **precision))
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many kinds (bad weights, missing package)
            first = (str(exc).splitlines()[0] if str(exc) else repr(exc)).split(". ")[0]
            raise UserError(f"cannot export detector {weights} to {fmt}: {first}") from None
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(exported, out)
    logger.info("exported %s -> %s (Ultralytics, %s)", weights, out, fmt)
    return out


def cache_dir() -> Path:
    """Where `--backend X` keeps the exports it makes of torch weights ($MOT_REID_CACHE, else ~/.cache/mot-reid)."""
    return Path(os.environ.get("MOT_REID_CACHE") or Path.home() / ".cache" / "mot-reid")


def _cached(weights: str | Path, fmt: str, suffix: str) -> Path:
    # Keyed by content and version, so a retrained file or a new mot-reid never reuses a stale export.
    key = f"{Path(weights).stem}-{_sha256(weights)[:12]}-{__version__}-{fmt}"
    return cache_dir() / "exports" / f"{key}{suffix}"


def cached_reid_export(weights: str | Path, backend: str) -> Path:
    """The export of a torch ReID file that `backend` runs, made once and reused."""
    fmt = BACKEND_FORMAT[backend]
    path = _cached(weights, fmt, ".onnx" if fmt == "onnx" else ".xml")
    if not path.is_file():
        logger.info("reid: exporting %s for --backend %s (once; cached in %s)", weights, backend, path.parent)
        export_reid(weights, fmt, path)
    return path


def cached_detector_export(weights: str | Path, backend: str, imgsz: int) -> Path:
    """The Ultralytics export of YOLO weights that `backend` runs, made once and reused."""
    fmt = DETECTOR_BACKEND_FORMAT[backend]
    path = _cached(weights, fmt, f"-{imgsz}" + {"onnx": ".onnx", "openvino": "_openvino_model",
                                                "engine": ".engine"}[fmt])
    if not path.exists():
        logger.info("detector: exporting %s for --backend %s (once; cached in %s)", weights, backend, path.parent)
        export_detector(weights, fmt, path, imgsz=imgsz)
    return path
