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
