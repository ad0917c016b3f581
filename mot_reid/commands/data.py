"""`mot-reid data`: dataset tools. `mot-reid data mot2reid SEQ... --out DIR` cuts ReID crops from MOT gt."""

from __future__ import annotations

HELP = "Dataset tools; mot2reid cuts ReID crops from MOT ground truth."


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="TOOL", required=True)
    m = sub.add_parser("mot2reid", help="person crops from MOT ground truth -> a Market-1501-style ReID folder",
                       description="Cut person crops from MOT ground truth into a Market-1501-style folder "
                                   "(bounding_box_train/, query/, bounding_box_test/). Identity = sequence + "
                                   "track id; camera = time segment of the sequence; identities split "
                                   "between train and test. Read the result with --dataset mot2reid.")
    m.add_argument("sequences", nargs="+", metavar="SEQ",
                   help="MOT sequence folders (seqinfo.ini, gt/gt.txt, img1/ or a video), or folders holding them")
    m.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --force)")
    m.add_argument("--force", action="store_true", help="replace a non-empty --out (only once the new one is complete)")
    m.add_argument("--segments", type=int, default=8, help="most time segments per sequence = cameras (default 8)")
    m.add_argument("--query-gap", type=float, default=0.5,
                   help="seconds (at least) between a query and its true matches; shorter sequences give no "
                        "queries, only gallery distractors (default 0.5)")
    m.add_argument("--test-fraction", type=float, default=0.5,
                   help="share of each sequence's identities held out for query/gallery (default 0.5; "
                        "0: all train, 1: all query/gallery, a held-out test set)")
    m.add_argument("--min-visibility", type=float, default=0.5,
                   help="minimum MOT17 visibility, and minimum share of the box inside the image (default 0.5)")
    m.add_argument("--min-height", type=int, default=50, help="minimum crop height in pixels (default 50)")
    m.add_argument("--min-width", type=int, default=16, help="minimum crop width in pixels (default 16)")
    m.add_argument("--frame-step", type=int, default=1, help="keep every n-th frame (default 1: all)")
    m.add_argument("--seed", type=int, default=0, help="seed of the train/test identity split (default 0)")


def run(args) -> int:
    from mot_reid.reid.mot2reid import Mot2ReidConfig, mot2reid

    cfg = Mot2ReidConfig(segments=args.segments, query_gap=args.query_gap, test_fraction=args.test_fraction,
                         min_visibility=args.min_visibility, min_height=args.min_height, min_width=args.min_width,
                         frame_step=args.frame_step, seed=args.seed)
    summary = mot2reid(args.sequences, args.out, cfg, force=args.force)
    print(f"wrote {args.out}")
    for split, counts in summary["splits"].items():
        print(f"  {split:<19} {counts['ids']:>4} ids {counts['images']:>6} images")
    return 0
