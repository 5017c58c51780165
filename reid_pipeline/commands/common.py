"""What every command shares: the common options and turning parsed flags into settings.

Every flag is a config key: its ``dest`` is ``cfg__section__key`` (``cfg__device`` for a
top-level key). ``config_from_args`` builds the run's ``Config`` from them; a command with
settings of its own (``reid_pipeline.commands.options``) declares them with ``add_options``
and reads them with ``options_from_args``.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar, Protocol, TypeVar

from reid_pipeline.config import Config, load_config, load_section, parse_set


class CommandOptions(Protocol):
    """A command's settings: a frozen dataclass naming its section (see ``options``)."""

    section: ClassVar[str]
    aliases: ClassVar[dict[str, str]]

    def validate(self, p: str) -> None: ...


OptionsT = TypeVar("OptionsT", bound=CommandOptions)


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every subcommand takes."""
    p.add_argument("--config", metavar="FILE", help="YAML config file (see configs/default.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set detector.conf=0.4 (repeatable)",
    )
    p.add_argument(
        "--device",
        dest="cfg__device",
        metavar="DEVICE",
        help="auto, cpu, cuda, cuda:N (key: device)",
    )
    p.add_argument(
        "--log-level",
        dest="cfg__log_level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (key: log_level)",
    )


def readable_metavars(parser: argparse.ArgumentParser) -> None:
    """Give every flag that maps onto a config key (``dest="cfg__..."``) and takes a value a
    metavar named after the flag (``--db`` -> ``DB``) where it has none, in ``parser`` and all
    its sub-parsers: help shows ``--db DB``, not the internal ``--db CFG__GALLERY__DB``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                readable_metavars(sub)
        elif (
            action.dest.startswith("cfg__")
            and action.option_strings
            and action.metavar is None
            and action.choices is None
            and action.nargs != 0
        ):
            action.metavar = action.option_strings[-1].lstrip("-").upper().replace("-", "_")


def add_options(p: argparse.ArgumentParser, schema: type[CommandOptions]) -> None:
    """Declare that the command ``p`` has its own settings, ``schema`` (section
    ``schema.section``): its flags and ``--set`` keys go there, not into the run's config."""
    p.set_defaults(command_options=schema)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags named ``cfg__section__key``, then ``--set`` items, as dotted keys."""
    overrides: dict[str, Any] = {}
    for name, value in vars(args).items():
        if name.startswith("cfg__") and value is not None:
            overrides[name[5:].replace("__", ".")] = value
    for item in getattr(args, "set", []) or []:
        k, v = parse_set(item)
        overrides[k] = v
    return overrides


def split_overrides(
    overrides: dict[str, Any], schema: type[CommandOptions] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run config keys, the command's own keys); the schema's old key names
    (``aliases``) are renamed to its section's."""
    if schema is None:
        return dict(overrides), {}
    run: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for k, v in overrides.items():
        k = schema.aliases.get(k, k)
        if k.split(".", 1)[0] == schema.section:
            own[k] = v
        else:
            run[k] = v
    return run, own


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults <- --config file <- flags named ``cfg__section__key`` <- --set items.

    The command's own settings (``add_options``) are checked here too, so that a bad one
    fails before the command starts; the command reads them with ``options_from_args``.
    """
    schema = getattr(args, "command_options", None)
    run, _ = split_overrides(flag_overrides(args), schema)
    cfg = load_config(getattr(args, "config", None), run)
    if schema is not None:
        options_from_args(args, schema)
    return cfg


def options_from_args(args: argparse.Namespace, schema: type[OptionsT]) -> OptionsT:
    """The command's own settings: ``schema``'s defaults <- its section of the --config file
    <- its flags <- --set items of its section."""
    _, own = split_overrides(flag_overrides(args), schema)
    return load_section(schema, schema.section, getattr(args, "config", None), own)
