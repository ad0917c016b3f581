"""One module per `mot-reid` subcommand: HELP, add_arguments(parser), run(args) -> int."""

from __future__ import annotations


def add_set_argument(parser, example: str) -> None:
    """The one `--set KEY=VALUE` option: several pairs after one flag, or the flag repeated."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"override config keys, e.g. --set {example}")


def add_backend_argument(parser) -> None:
    """`--backend`, shared by track, batch and eval (choices checked by the pipeline config)."""
    parser.add_argument("--backend", metavar="auto|torch|onnxruntime|openvino|tensorrt",
                        help="runtime of the detector and embedder [auto: torch, or an exported file's own]; "
                             "torch weights with another backend are exported once into ~/.cache/mot-reid")


def add_engine_arguments(parser) -> None:
    """Where many independent jobs run (`mot_reid.engine.run_jobs`): `batch` inputs, `eval` sequences."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local worker processes (default) or Ray actors on a cluster")
    parser.add_argument("--workers", type=int, help="worker count [GPUs, else cores/2, at most the inputs]")
    parser.add_argument("--gpus-per-worker", type=float, default=0, help="--engine ray: GPUs per actor [0: CPU]")
    parser.add_argument("--address", help="--engine ray: auto | ray://HOST:10001 [start a local Ray]")
    parser.add_argument("--max-retries", type=int, default=1, help="--engine ray: retries of a lost worker's input")


def engine_options(args, n_items: int) -> dict:
    """`run_jobs` keyword arguments from the options above (default workers resolved for `n_items` jobs)."""
    from mot_reid.engine import default_workers
    from mot_reid.errors import UserError

    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    return {"engine": args.engine, "workers": args.workers or default_workers(n_items),
            "gpus_per_worker": args.gpus_per_worker, "address": args.address, "max_retries": args.max_retries}
