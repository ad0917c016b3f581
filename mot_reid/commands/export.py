"""`mot-reid export --reid W | --detector W --format F`: models for ONNX Runtime, OpenVINO or TensorRT."""

from __future__ import annotations

HELP = "Export the ReID embedder (onnx, openvino) or the YOLO detector (onnx, openvino, engine) for --backend."


def add_arguments(parser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--reid", metavar="WEIGHTS", help="a mot-reid checkpoint or torchreid OSNet .pth")
    what.add_argument("--detector", metavar="WEIGHTS", help="YOLO .pt weights (exported by Ultralytics)")
    parser.add_argument("--format", required=True, choices=("onnx", "openvino", "engine"),
                        help="onnx | openvino | engine (TensorRT, detector only, needs a CUDA GPU)")
    parser.add_argument("--half", action="store_true", help="fp16 weights (see mot_reid/export.py)")
    parser.add_argument("--imgsz", type=int, default=640, help="detector input size [640]")
    parser.add_argument("--out", help="file to write [NAME.onnx | NAME.xml | NAME_openvino_model/ | NAME.engine "
                                      "in the current folder]")


def run(args) -> int:
    from mot_reid.export import export_detector, export_reid

    if args.reid:
        out = export_reid(args.reid, args.format, args.out, half=args.half)
    else:
        out = export_detector(args.detector, args.format, args.out, half=args.half, imgsz=args.imgsz)
    print(out)
    return 0
