"""Building a config: defaults <- a YAML file <- overrides (dotted keys), then validation.

Nothing is mutated: each step returns a new frozen dataclass (``dataclasses.replace``).
``load_config`` builds the run's ``Config``; ``load_section`` builds one command's own
settings (its section of the same file, e.g. ``manage:``, and its ``--set manage.*`` keys);
``write_resolved`` saves the resolved config beside a run's outputs, readable back with
``load_config``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from reid_pipeline.config.base import Section, check, check_types, coerce
from reid_pipeline.config.schema import Config
from reid_pipeline.errors import ConfigError, OutputError
from reid_pipeline.utils import redact_url

# Sections of a config file that belong to one command, not to the run: the command reads
# its own with ``load_section`` (its schema lives with the command); ``load_config`` skips
# them in files (one file may serve every command) and refuses them as overrides.
COMMAND_SECTIONS: dict[str, str] = {
    "bench": "reid bench",
    "demo": "reid demo",
    "manage": "reid gallery",
    "report": "reid report",
    "search": "reid search",
}

RESOLVED_NAME = "config.yaml"


T = TypeVar("T")
S = TypeVar("S", bound=Section)


def _apply(obj: T, data: Any, prefix: str) -> T:
    """``obj`` with the keys of ``data`` (a nested mapping) set, each coerced to its type."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': must be a mapping, got {data!r}")
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(f"config key '{key}': unknown key (known: {sorted(names)})")
        cur = changes.get(k, getattr(obj, k))
        if dataclasses.is_dataclass(cur):
            changes[k] = _apply(cur, v, key)
        else:
            changes[k] = coerce(v, hints[k], key)
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    data: Any = value
    for p in reversed(dotted.split(".")):
        data = {p: data}
    return data


def with_key(cfg: T, dotted: str, value: Any) -> T:
    """A copy of ``cfg`` with one dotted key (``detector.kind``) set from a CLI value, its
    type coerced; not validated (``load_config`` and ``Config.validate`` do that)."""
    return _apply(cfg, _nested(dotted, value), "")


class _YamlLoader(yaml.SafeLoader):
    """YAML with only true/false as booleans (YAML 1.2): YAML 1.1 reads ``off``/``no``/``on``
    as booleans, so ``train.amp: off`` or ``--set train.amp=off`` would arrive as False."""


_BOOL = "tag:yaml.org,2002:bool"
_YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != _BOOL]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: Any) -> Any:
    """Parse YAML text (or a file object) with the config's rules (see ``_YamlLoader``)."""
    return yaml.load(text, Loader=_YamlLoader)


def parse_set(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` from ``--set``; the value is read as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    k, v = item.split("=", 1)
    try:
        return k.strip(), read_yaml(v) if v != "" else ""
    except yaml.YAMLError:
        return k.strip(), v


def read_config_file(path: str | Path) -> Any:
    """The parsed YAML of a config file (``{}`` when empty); a missing or bad file raises
    ``ConfigError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        return read_yaml(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Build the config: defaults <- YAML file <- overrides (dotted keys); then validate.

    A command's own section in the file (``COMMAND_SECTIONS``) is left to that command;
    as an override it is refused, naming the command it belongs to.
    """
    cfg = Config()
    if path:
        data = read_config_file(path)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in COMMAND_SECTIONS}
        cfg = _apply(cfg, data, "")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        head = k.split(".", 1)[0]
        if head in COMMAND_SECTIONS:
            raise ConfigError(f"config key '{k}': a setting of `{COMMAND_SECTIONS[head]}` only")
        cfg = with_key(cfg, k, v)
    cfg.validate()
    return cfg


def load_section(
    schema: type[S],
    section: str,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """One command's settings: ``schema``'s defaults <- the file's ``section:`` mapping <-
    overrides (dotted keys starting with ``section.``); validated, keys named
    ``section.key`` in every error."""
    opts = schema()
    if path:
        data = read_config_file(path)
        if isinstance(data, dict) and section in data:
            opts = _apply(opts, data[section], section)
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        head, _, rest = k.partition(".")
        check(head == section and bool(rest), k, f"is not a key of section '{section}'")
        opts = _apply(opts, _nested(rest, v), section)
    check_types(opts, section)
    opts.validate(section)
    return opts


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):  # an access token (serve.token) is never written out
        return {k: "" if k == "token" else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


def resolved_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as plain data, credentials in URLs (``scheme://user:pw@host``) redacted."""
    return _redacted(cfg.to_dict())


def write_resolved(cfg: Config, folder: str | Path, name: str = RESOLVED_NAME) -> Path:
    """Write the resolved config of a run as YAML into ``folder`` (``config.yaml``), with
    URL credentials redacted; ``load_config`` reads it back to an equal ``Config``
    (credentials aside). Returns the file's path; a write failure raises ``OutputError``."""
    path = Path(folder) / name
    text = (
        "# The resolved config of this run (URL credentials redacted); reid ... --config "
        "reads it back.\n" + yaml.safe_dump(resolved_dict(cfg), sort_keys=False)
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(
            f"cannot write the run's config {str(path)!r}: {e.strerror or e}"
        ) from None
    return path
