"""One module per `mot-reid` subcommand: HELP, add_arguments(parser), run(args) -> int."""

from __future__ import annotations


def add_set_argument(parser, example: str) -> None:
    """The one `--set KEY=VALUE` option: several pairs after one flag, or the flag repeated."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"override config keys, e.g. --set {example}")
