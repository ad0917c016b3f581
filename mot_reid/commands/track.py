"""`mot-reid track SOURCE --out tracks.json`: detect, embed and track people in a video, folder or stream."""

from __future__ import annotations

from mot_reid.commands import add_backend_argument, add_set_argument

HELP = "Track people in a video, image folder or stream and write tracks.json."


def add_arguments(parser) -> None:
    parser.add_argument("source", help="video file, MOT sequence or img1/ folder, image glob ('frames/*.jpg'), "
                                       "camera index (0) or stream URL (rtsp://, http://)")
    parser.add_argument("--out", required=True, help="tracks.json to write")
    add_pipeline_options(parser)
    parser.add_argument("--mot-txt", help="also write MOT Challenge rows (frame,id,x,y,w,h,conf,-1,-1,-1)")
    parser.add_argument("--save-video", help="also write an MP4 with boxes, ids and trails")
    add_set_argument(parser, "detector.batch=16 tracker.max_age=50")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_pipeline_options(parser) -> None:
    """The options that configure the pipeline itself (models, tracker, device, frames), shared by `track` and
    `batch`; `overrides_from_args` turns them into config pairs. A new pipeline option goes here, once."""
    parser.add_argument("--config", help="pipeline YAML (default: configs/pipeline/default.yaml)")
    parser.add_argument("--detector", help="auto | hog | YOLO weights (.pt, or an Ultralytics export: .onnx, "
                                         "NAME_openvino_model/, .engine) [auto]")
    parser.add_argument("--detections", help="MOT det.txt whose boxes replace the detector (public detections)")
    parser.add_argument("--reid", help="auto | none | mot-reid checkpoint | torchreid OSNet .pth | "
                                       "`mot-reid export` file (.onnx, .xml) [auto]")
    parser.add_argument("--tracker", help="auto | deepsort | strongsort | mot-reid | motion | motion_yolo | tracker "
                                          "YAML [auto: mot-reid with a ReID model; without, motion_yolo on YOLO "
                                          "boxes, motion on HOG boxes]")
    parser.add_argument("--device", help="auto | cpu | cuda:N [auto]")
    add_backend_argument(parser)
    parser.add_argument("--classes", type=int, nargs="+", help="COCO class ids to track [0 = person]")
    parser.add_argument("--conf", type=float, help="minimum detector confidence [0.25]")
    parser.add_argument("--imgsz", type=int, help="detector input size [640]")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")


FLAG_OF_KEY = {"detector.conf": "--conf", "detector.imgsz": "--imgsz", "max_frames": "--max-frames",
               "backend": "--backend"}


def overrides_from_args(args) -> list[str]:
    """CLI flags as `--set` pairs (flags win over --set, which wins over the YAML)."""
    pairs = list(args.overrides)
    flags = {"detector.weights": args.detector, "detector.detections": args.detections,
             "embedder.weights": args.reid, "tracker": args.tracker, "device": args.device, "backend": args.backend,
             "detector.conf": args.conf, "detector.imgsz": args.imgsz, "max_frames": args.max_frames}
    pairs += [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.classes is not None:
        pairs.append(f"detector.classes=[{','.join(map(str, args.classes))}]")
    return pairs


def run(args) -> int:
    from mot_reid import config
    from mot_reid.errors import UserError
    from mot_reid.pipeline_config import PipelineConfig
    from mot_reid.track_job import split_overrides, track

    pipeline_pairs, tracker_pairs = split_overrides(overrides_from_args(args))
    path = config.resolve_config_path(args.config, "pipeline") if args.config else None
    try:
        cfg = config.load(PipelineConfig, path, pipeline_pairs)
    except UserError as exc:
        # A range error on a key a flag sets also names the flag the user typed.
        flag = next((f for key, f in FLAG_OF_KEY.items() if f"'{key}'" in str(exc)), None)
        if flag is None:
            raise
        raise UserError(f"{exc} ({flag})") from None
    result, _ = track(args.source, cfg, args.out, tracker_pairs, mot_txt=args.mot_txt, save_video=args.save_video,
                      show_progress=not args.no_progress)
    if result.stopped_by == "interrupt":
        return 130
    if result.stopped_by == "source-error":
        return 2
    return 0
