"""The ``reid`` command: parses arguments, builds the config, calls library code.

Each subcommand lives in ``reid_pipeline/commands/<name>.py`` with ``register(subparsers)``;
it maps its flags onto config keys (every flag is a config key) through
``reid_pipeline.commands.common`` (``add_common``, ``config_from_args``).
Heavy imports (torch, cv2, ultralytics) happen inside the command, so ``reid --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from reid_pipeline import __version__
from reid_pipeline.commands.common import config_from_args, readable_metavars
from reid_pipeline.errors import ReidError
from reid_pipeline.utils import redact_url, setup_logging

COMMANDS = [
    "demo",
    "process",
    "gallery",
    "train",
    "evaluate",
    "stream",
    "bench",
    "report",
    "search",
    "evaluate_mot",
    "worker",
    "matcher",
    "export",
    "serve",
]

log = logging.getLogger("reid_pipeline.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reid", description="Person re-identification across cameras."
    )
    parser.add_argument("--version", action="version", version=f"reid-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"reid_pipeline.commands.{name}")
        except ModuleNotFoundError as e:  # a command not built yet
            if e.name != f"reid_pipeline.commands.{name}":
                raise
            continue
        mod.register(sub)
    readable_metavars(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        cfg = config_from_args(args)
        setup_logging(cfg.log_level)
        return int(args.func(args, cfg) or 0)
    except ReidError as e:
        print(f"error: {redact_url(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "interrupted: committed work is kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
