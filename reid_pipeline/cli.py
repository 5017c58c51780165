"""The ``reid`` command: parses arguments, builds the config, calls library code.

Each subcommand lives in ``reid_pipeline/commands/<name>.py`` with ``register(subparsers)``;
it maps its flags onto config keys (every flag is a config key) through ``config_from_args``.
Heavy imports (torch, cv2, ultralytics) happen inside the command, so ``reid --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from reid_pipeline import __version__
from reid_pipeline.config import Config, load_config, parse_set
from reid_pipeline.errors import ReidError
from reid_pipeline.utils import redact_url, setup_logging

COMMANDS = ["demo", "process", "gallery", "train", "evaluate", "stream", "bench", "report",
            "search", "evaluate_mot"]

log = logging.getLogger("reid_pipeline.cli")


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every subcommand takes."""
    p.add_argument("--config", help="YAML config file (see configs/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set detector.conf=0.4 (repeatable)")
    p.add_argument("--device", dest="cfg__device", help="auto, cpu, cuda, cuda:N (key: device)")
    p.add_argument("--log-level", dest="cfg__log_level", help="key: log_level")


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults <- --config file <- flags named ``cfg__section__key`` <- --set items."""
    overrides: dict[str, Any] = {}
    for name, value in vars(args).items():
        if name.startswith("cfg__") and value is not None:
            overrides[name[5:].replace("__", ".")] = value
    for item in getattr(args, "set", []) or []:
        k, v = parse_set(item)
        overrides[k] = v
    return load_config(getattr(args, "config", None), overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reid", description="Person re-identification across cameras.")
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
        print("interrupted: committed work is kept; run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
