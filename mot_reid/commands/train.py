"""`mot-reid train`: train the Bag-of-Tricks ReID model from a recipe in configs/reid/."""

from __future__ import annotations

from pathlib import Path

from mot_reid.commands import add_set_argument

HELP = "Train the Bag-of-Tricks ReID model from a recipe."


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="softmax_triplet_with_center",
                        help="recipe: a name from configs/reid/ or a YAML path (default: %(default)s)")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset folder")
    parser.add_argument("--dataset", metavar="NAME",
                        help="market1501, dukemtmc, msmt17, folder or mot2reid (default: the recipe's data.dataset)")
    parser.add_argument("--output", metavar="DIR",
                        help="output folder (default: runs/reid/<recipe name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint.pt")
    add_set_argument(parser, "solver.epochs=10 model.backbone=resnet18")


def run(args) -> int:
    from mot_reid import config
    from mot_reid.reid.distributed import launched_rank
    from mot_reid.reid.recipe import ReIDRecipe
    from mot_reid.reid.train import train

    recipe_path = config.resolve_config_path(args.config, "reid")
    overrides = list(args.overrides)
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    recipe = config.load(ReIDRecipe, recipe_path, overrides)
    output = Path(args.output) if args.output else Path("runs") / "reid" / recipe_path.stem
    history = train(recipe, args.data, output, resume=args.resume)
    if launched_rank() != 0:
        return 0  # under torchrun, rank 0 alone reports
    if history["evals"]:
        last = history["evals"][-1]
        print(f"rank-1 {100 * last.get('rank1', 0):.1f}%  mAP {100 * last.get('mAP', 0):.1f}%  "
              f"mINP {100 * last.get('mINP', 0):.1f}%  ({output / 'model.pt'})")
    else:
        print(output / "model.pt")
    return 0
