"""Run exported models: which runtime a file needs, and ONNX Runtime / OpenVINO sessions for the embedder.

A file is recognised by its suffix AND its metadata, never by its name:
- `.onnx` with a `mot_reid` metadata entry: an embedder from `mot-reid export --reid`;
- `.onnx` with Ultralytics' metadata (`stride`, `names`), a `*_openvino_model/` folder with Ultralytics'
  `metadata.yaml`, or a `.engine`: a detector Ultralytics exported (and runs itself);
- `.xml` with `mot_reid` rt_info: an embedder in OpenVINO IR.

The embedder sessions take the crops `Embedder.crops` makes (normalised RGB float, N x 3 x H x W) and
return one feature row per crop: one runtime call per crop batch, the batch axis is dynamic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mot_reid.errors import UserError
from mot_reid.log import logger

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
META_KEY = "mot_reid"  # ONNX metadata_props key / OpenVINO rt_info key holding the JSON metadata
META_FORMAT = "mot-reid-embedder-v1"
INSTALL = {"onnxruntime": 'pip install "mot-reid[onnx]"', "openvino": 'pip install "mot-reid[openvino]"',
           "tensorrt": "pip install onnxruntime-gpu tensorrt (and a CUDA GPU)"}
# Which backends can run each kind of file (the first is what `auto` picks).
RUNS_ON = {"torch": ("torch",), "onnx": ("onnxruntime", "tensorrt"), "openvino": ("openvino",),
           "engine": ("tensorrt",)}


def import_runtime(backend: str):
    """The runtime's Python module, or one line naming the extra that installs it."""
    try:
        if backend == "openvino":
            import openvino

            return openvino
        import onnxruntime

        return onnxruntime
    except ImportError:
        name = "OpenVINO" if backend == "openvino" else "ONNX Runtime"
        raise UserError(f"--backend {backend} needs {name}, which is not installed: {INSTALL[backend]}") from None


def file_format(path: str | Path) -> str:
    """torch | onnx | openvino | engine, from the suffix (an Ultralytics OpenVINO export is a folder)."""
    path = Path(path)
    if path.is_dir():
        return "openvino" if any(path.glob("*.xml")) else "torch"
    return {".onnx": "onnx", ".xml": "openvino", ".engine": "engine"}.get(path.suffix.lower(), "torch")


def pick_backend(fmt: str, requested: str, what: str, path) -> str:
    """The backend that runs a file of format `fmt`; a torch file with an exported backend means 'export it'."""
    if requested == "auto":
        return RUNS_ON[fmt][0]
    if fmt == "torch" or requested in RUNS_ON[fmt]:
        return requested
    raise UserError(f"{what} {path} is an {fmt} export, which --backend {requested} cannot run; "
                    f"use --backend {' or '.join(RUNS_ON[fmt])} (or auto)")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split())[:200] if text else type(exc).__name__


def ort_providers(backend: str, device: torch.device, fp16: bool = False) -> list:
    """Execution providers: TensorRT / CUDA when asked and present, CPU always last as the fallback."""
    ort = import_runtime(backend)
    available = ort.get_available_providers()
    if backend == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise UserError(f"--backend tensorrt: this ONNX Runtime has no TensorRT execution provider "
                            f"(has {', '.join(available)}): {INSTALL['tensorrt']}")
        from mot_reid.export import cache_dir

        trt = {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(cache_dir() / "tensorrt")}
        return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        logger.warning("onnxruntime: no CUDA execution provider here (install onnxruntime-gpu); the embedder "
                       "runs on the CPU")
    return ["CPUExecutionProvider"]


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (ONNX Runtime reads them; a damaged file is one line)."""
    ort = import_runtime("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a damaged file
        raise UserError(f"cannot load {path}: damaged or not an ONNX model ({_first_line(exc)})") from None
    return dict(session.get_modelmeta().custom_metadata_map)


class OnnxRuntimeExtract:
    """`extract` for Embedder: one `session.run` per crop batch."""

    def __init__(self, path: str | Path, backend: str, device: torch.device, fp16: bool = False):
        ort = import_runtime(backend)
        options = ort.SessionOptions()
        # No busy-waiting between calls: the detector runs between two embedder calls on the same cores
        # (measured 15% faster embedding on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ort_providers(backend, device, fp16)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a damaged file
            raise UserError(f"cannot load {path}: damaged or not an ONNX model ({_first_line(exc)})") from None
        self.input = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()  # what runs, after ORT dropped any it could not start

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(crops.detach().to("cpu", torch.float32).numpy())  # the graph wants NCHW
        return torch.from_numpy(self.session.run(None, {self.input: x})[0])


def _check_ir(path) -> None:
    """An IR is XML with a <net> root and a .bin beside it. Checked first: OpenVINO would hand a file its IR
    reader refuses to its other frontends, whose parse errors go straight to stderr."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.parse(str(path)).getroot()
    except ElementTree.ParseError as exc:
        raise UserError(f"cannot load {path}: damaged or not an OpenVINO IR (not XML: {exc})") from None
    if root.tag != "net":
        raise UserError(f"cannot load {path}: not an OpenVINO IR (root <{root.tag}>, not <net>)")
    if not Path(path).with_suffix(".bin").is_file():
        raise UserError(f"cannot load {path}: its weights {Path(path).with_suffix('.bin').name} are missing")


class OpenVinoExtract:
    """`extract` for Embedder on OpenVINO's CPU plugin: one infer request per crop batch."""

    def __init__(self, path: str | Path, device: torch.device):
        ov = import_runtime("openvino")
        if device.type != "cpu":  # Intel GPUs are not handled: the crops come back from `device` to the CPU
            logger.warning("openvino: the embedder runs on the CPU (crops are made on %s and copied)", device)
        _check_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            # f32: the CPU plugin would otherwise run in bf16 where the CPU has it (features off by ~0.5%).
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        except Exception:  # noqa: BLE001 - OpenVINO's RuntimeError starts with its source file, not the cause
            raise UserError(f"cannot load {path}: damaged OpenVINO IR (OpenVINO cannot read it)") from None
        self.metadata = {META_KEY: model.get_rt_info(META_KEY).astype(str)} if model.has_rt_info(META_KEY) else {}
        self.request = compiled.create_infer_request()

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(crops.detach().to("cpu", torch.float32).numpy())
        self.request.infer({0: x})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def embedder_metadata(raw: dict[str, str], path) -> dict:
    """The JSON `mot-reid export --reid` wrote, or one line saying the file is something else."""
    try:
        meta = json.loads(raw[META_KEY])
        assert meta.get("format") == META_FORMAT
    except (KeyError, ValueError, AssertionError, AttributeError):
        what = "an Ultralytics detector export (give it to --detector)" if "stride" in raw else "something else"
        raise UserError(f"{path} is not a mot-reid embedder export (no {META_FORMAT} metadata) but {what}; "
                        "make one with `mot-reid export --reid WEIGHTS`") from None
    return meta


def exported_embedder(path: str | Path, backend: str, device: torch.device):
    """An Embedder running `path` (a `mot-reid export --reid` file) on `backend` (auto: the file's runtime)."""
    from mot_reid.embedding import Embedder

    if not Path(path).is_file():
        raise UserError(f"ReID weights not found: {path}")
    fmt = file_format(path)
    backend = pick_backend(fmt, backend, "ReID model", path)
    if fmt == "onnx":
        meta = embedder_metadata(onnx_metadata(path), path)
        extract = OnnxRuntimeExtract(path, backend, device, fp16=meta.get("precision") == "fp16")
    else:
        extract = OpenVinoExtract(path, device)
        meta = embedder_metadata(extract.metadata, path)
    info = {"kind": "exported", "backend": backend, "weights": str(path), "source": meta.get("source"),
            "feature": meta.get("feature"), "precision": meta.get("precision"),
            "providers": getattr(extract, "providers", None)}
    return Embedder(extract, tuple(meta["input_size"]), device, mean=meta["mean"], std=meta["std"],
                    info={k: v for k, v in info.items() if v is not None})


def check_detector_file(path: str | Path) -> str:
    """The format of an exported detector, after checking it is Ultralytics' (a ReID export is refused)."""
    fmt = file_format(path)
    if fmt == "onnx":
        meta = onnx_metadata(path)
        if META_KEY in meta:
            raise UserError(f"{path} is a mot-reid embedder export; give it to --reid, not --detector")
        if "stride" not in meta or "names" not in meta:
            raise UserError(f"{path} is not an Ultralytics detector export (no stride/names metadata); "
                            "make one with `mot-reid export --detector WEIGHTS --format onnx`")
    elif fmt == "openvino" and Path(path).is_dir() and not (Path(path) / "metadata.yaml").is_file():
        raise UserError(f"{path} is not an Ultralytics OpenVINO export (no metadata.yaml)")
    elif fmt == "openvino" and not Path(path).is_dir():
        raise UserError(f"{path}: a detector in OpenVINO IR is the folder Ultralytics exports "
                        "(NAME_openvino_model/), not one .xml file")
    return fmt
