"""`mot-reid eval-reid`: CMC rank-1/5/10, mAP and mINP of a ReID checkpoint, optionally re-ranked."""

from __future__ import annotations

HELP = "Evaluate a ReID checkpoint: CMC rank-1/5/10, mAP, mINP, optional re-ranking."

KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")
LABELS = ("R1", "R5", "R10", "mAP", "mINP")


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model file written by `mot-reid train`")
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--dataset", default=None,
                        help="market1501, dukemtmc, msmt17, folder or mot2reid (default: the one the checkpoint was "
                             "trained on; another one gives a cross-domain evaluation)")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)")
    parser.add_argument("--feat", choices=["before", "after"], default=None,
                        help="pre-BN (tracker) or post-BN (paper) feature (default: the recipe's test.feat)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the numbers (percent) and config here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: recipe)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: recipe)")


def run(args) -> int:
    from mot_reid import config
    from mot_reid.atomic import write_json
    from mot_reid.device import resolve_device
    from mot_reid.log import logger
    from mot_reid.provenance import versions
    from mot_reid.reid.datasets import load_dataset
    from mot_reid.reid.evaluate import evaluate_model
    from mot_reid.reid.model import load_checkpoint_model

    device = resolve_device(args.device)
    model, recipe = load_checkpoint_model(args.checkpoint, device)
    trained_on = recipe.data.dataset
    name = args.dataset or trained_on
    feat = args.feat or recipe.test.feat
    dataset = load_dataset(args.data, name)
    logger.info(dataset.summary())
    metrics = evaluate_model(model, dataset, recipe, device, feat=feat, rerank=args.rerank,
                             batch_size=args.batch_size, num_workers=args.workers)

    percent = {k: round(100.0 * metrics[k], 4) for k in KEYS}
    print(f"{dataset.name}: {metrics['num_query']} queries ({metrics['num_valid_queries']} with a match), "
          f"{metrics['num_gallery']} gallery, feat {feat}{', re-ranked' if args.rerank else ''}"
          f"{f', cross-domain (trained on {trained_on})' if name != trained_on else ''}")
    print("  ".join(f"{label} {percent[k]:.1f}" for label, k in zip(LABELS, KEYS, strict=True)))
    if args.json:
        write_json(args.json, {
            "metrics_percent": {**percent, "cmc": [round(100.0 * v, 4) for v in metrics["cmc"]]},
            "num_query": metrics["num_query"], "num_gallery": metrics["num_gallery"],
            "num_valid_queries": metrics["num_valid_queries"],
            "checkpoint": str(args.checkpoint), "data": str(args.data), "dataset": dataset.name,
            "trained_on": trained_on, "cross_domain": name != trained_on, "feat": feat, "rerank": args.rerank,
            "device": str(device), "recipe": config.to_dict(recipe), "versions": versions(),
        })
    return 0
