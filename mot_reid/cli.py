"""The `mot-reid` command: one subcommand per module in `mot_reid.commands`.

Each command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Imports of torch and friends happen inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mot_reid import __version__
from mot_reid.errors import UserError
from mot_reid.log import setup_logging

COMMANDS = {
    "track": "mot_reid.commands.track",
    "batch": "mot_reid.commands.batch",
    "eval": "mot_reid.commands.eval",
    "train": "mot_reid.commands.train",
    "eval-reid": "mot_reid.commands.eval_reid",
    "data": "mot_reid.commands.data",
    "export": "mot_reid.commands.export",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad invocation in one line (no usage dump) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog="mot-reid", description=__doc__.splitlines()[0].rstrip(":"))
    parser.description = "Track people in video with learned appearance; train and evaluate the ReID model."
    parser.add_argument("--version", action="version", version=f"mot-reid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level log messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"mot-reid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mot-reid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
