"""Benchmark `mot-reid track`: FPS per stage and end to end on PETS09-S2L1, next to Ultralytics' own tracker.

Rows (all in one run, same video, same machine):
- decode only (the background decode thread, no models);
- mot-reid: YOLOv8n + OSNet x0.25 (MSMT17 weights) + DeepSORT, once per backend (torch, onnxruntime,
  openvino: detector and embedder both on it; the exports are made before the timed run);
- mot-reid: YOLOv8n + motion only;
- with a GPU: YOLOv8n + ResNet50 ReID (random weights: speed does not depend on them);
- Ultralytics `model.track(..., tracker="botsort.yaml")`, the reference a user would otherwise pick
  (PyTorch weights, and the OpenVINO export of the same weights).

Stage FPS = frames / seconds spent in that stage; stages overlap (threads), so end to end is
bounded by the slowest stage, not by the sum. Writes its section `bench_pipeline` of BENCHMARKS.md.

    python scripts/bench_pipeline.py [--max-frames 200] [--device auto] [--data ../shared/data]
        [--backends torch onnxruntime openvino]   (add tensorrt on a GPU)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import machine, update_section  # noqa: E402

from mot_reid import config  # noqa: E402
from mot_reid.device import resolve_device  # noqa: E402
from mot_reid.embedding import torchvision_embedder  # noqa: E402
from mot_reid.pipeline_config import PipelineConfig  # noqa: E402
from mot_reid.sources import open_source  # noqa: E402
from mot_reid.track_job import build_models, track  # noqa: E402


def decode_only(video: str, max_frames: int) -> float:
    src = open_source(video)
    start, n = time.perf_counter(), 0
    for _ in src:
        n += 1
        if n >= max_frames:
            break
    src.close()
    return n / (time.perf_counter() - start)


def ours(video: str, pairs: list[str], max_frames: int, resnet50: bool = False) -> dict:
    cfg = config.load(PipelineConfig, None, pairs + [f"max_frames={max_frames}"])
    models = build_models(cfg)
    if resnet50:
        models.pipeline.embedder = torchvision_embedder(models.pipeline.device, weights=None, arch="resnet50")
        models.embedder_info = models.pipeline.embedder.info
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = track(video, cfg, Path(tmp) / "tracks.json", show_progress=False, models=models)
    return result.summary()


def ultralytics_botsort(video: str, weights: str, device: str, max_frames: int) -> float:
    from ultralytics import YOLO

    model = YOLO(weights, task="detect")
    start, n = time.perf_counter(), 0
    for _ in model.track(video, tracker="botsort.yaml", conf=0.1, imgsz=640, classes=[0], stream=True,
                         persist=True, device=device, verbose=False):
        n += 1
        if n >= max_frames:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--max-frames", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "openvino"])
    args = parser.parse_args()
    data = Path(args.data)
    video = str(data / "mot/PETS09-S2L1/PETS09-S2L1.avi")
    yolo = str(data / "weights/yolov8n.pt")
    device = resolve_device(args.device)
    common = [f"detector.weights={yolo}", "detector.conf=0.1", "detector.imgsz=640", f"device={device}"]
    n = args.max_frames

    rows = []
    fps = decode_only(video, n)
    rows.append(("decode only (OpenCV, background thread)", {"decode": fps, "end_to_end": fps}))
    osnet = f"embedder.weights={data / 'weights/osnet_x0_25_msmt17.pth'}"
    for backend in args.backends:
        rows.append((f"mot-reid: YOLOv8n + OSNet x0.25 (MSMT17) + DeepSORT, --backend {backend}",
                     ours(video, common + [osnet, f"backend={backend}"], n)["fps"]))
    rows.append(("mot-reid: YOLOv8n + motion only (DeepSORT, --reid none)",
                 ours(video, common + ["embedder.weights=none"], n)["fps"]))
    if device.type == "cuda":
        rows.append(("mot-reid: YOLOv8n + ResNet50 ReID (random weights) + DeepSORT",
                     ours(video, common + ["embedder.weights=none"], n, resnet50=True)["fps"]))
    bot = ultralytics_botsort(video, yolo, str(device), n)
    rows.append(("Ultralytics model.track, botsort.yaml (YOLOv8n, PyTorch; no ReID)", {"end_to_end": bot}))
    if "openvino" in args.backends:
        from mot_reid.export import cached_detector_export

        ov_yolo = str(cached_detector_export(yolo, "openvino", 640))  # the export the openvino row ran
        rows.append(("Ultralytics model.track, botsort.yaml (YOLOv8n, OpenVINO export; no ReID)",
                     {"end_to_end": ultralytics_botsort(video, ov_yolo, str(device), n)}))
    if device.type != "cuda":
        rows.append(("GPU: --backend tensorrt / onnxruntime CUDA EP: not measured (no GPU lent); run "
                     "`python scripts/bench_pipeline.py --device cuda --backends torch onnxruntime tensorrt`", {}))

    def cell(v):
        return f"{v:.1f}" if v else "-"

    load = os.getloadavg()[0]  # other jobs on a shared machine slow every row alike
    lines = [f"### mot-reid track on PETS09-S2L1 (768x576), first {n} frames, {machine()}, device {device}", "",
             "YOLOv8n at conf 0.1, imgsz 640, person class, batch 8 frames. Stage FPS = frames / time in the stage. "
             "Detect and embed run one after the other in the model thread (overlapping them only oversubscribes "
             "2 cores), so end to end is about 1 / (1/detect + 1/embed); decode and track run in their own threads. "
             f"Load average {load:.1f} when the run ended (the machine is shared with other jobs).", "",
             "| pipeline | decode | detect | embed | track | end to end FPS |", "|---|---|---|---|---|---|"]
    for name, f in rows:
        lines.append(f"| {name} | {cell(f.get('decode'))} | {cell(f.get('detect'))} | {cell(f.get('embed'))} | "
                     f"{cell(f.get('track'))} | **{cell(f.get('end_to_end'))}** |")
    target = max((f.get("end_to_end") or 0) for name, f in rows if name.startswith("mot-reid: YOLOv8n + OSNet"))
    lines += ["", f"Best mot-reid with ReID / Ultralytics model.track (PyTorch, no ReID): {target / bot:.2f}x.",
              "", f"Reproduce: `python scripts/bench_pipeline.py --max-frames {n} --backends {' '.join(args.backends)}`"
              ]
    markdown = "\n".join(lines)
    print(markdown)
    update_section("bench_pipeline", markdown)


if __name__ == "__main__":
    main()
