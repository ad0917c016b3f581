"""One module per `mot-reid` subcommand: HELP, add_arguments(parser), run(args) -> int."""

from __future__ import annotations

import sys


def not_built(command: str, issue: int) -> int:
    """What a subcommand says until its issue lands: one line, non-zero exit."""
    print(f"mot-reid {command}: not built yet (tracked in issue #{issue})", file=sys.stderr)
    return 2


def add_set_argument(parser, example: str) -> None:
    """The one `--set KEY=VALUE` option: several pairs after one flag, or the flag repeated."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"override config keys, e.g. --set {example}")
