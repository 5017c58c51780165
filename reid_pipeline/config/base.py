"""What every config schema shares: the check that names a key, type coercion, frame ranges.

A schema is a frozen dataclass whose ``validate(prefix)`` method holds its rules, next to the
fields they guard; ``check_types`` checks each field against its annotation.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Protocol, get_args, get_origin, get_type_hints

from reid_pipeline.errors import ConfigError

DeviceName = str  # "auto", "cpu", "cuda", "cuda:1"


class Section(Protocol):
    """A config section: a frozen dataclass with its rules in ``validate(prefix)``."""

    def validate(self, p: str) -> None: ...


def check(cond: bool, key: str, msg: str) -> None:
    """Raise ``ConfigError`` naming the dotted ``key`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"config key '{key}': {msg}")


def check_device(key: str, value: str) -> None:
    ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    check(ok, key, f"must be auto, cpu, cuda or cuda:N, got {value!r}")


_FRAMES_RE = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def frame_range(text: str, key: str) -> tuple[int, int] | None:
    """``"A:B"`` (1-based frame numbers, inclusive) -> ``(A, B)``; ``""`` -> ``None``."""
    if not text.strip():
        return None
    m = _FRAMES_RE.fullmatch(text)
    check(m is not None, key, f"must be FIRST:LAST (1-based frame numbers), got {text!r}")
    assert m is not None
    a, b = int(m.group(1)), int(m.group(2))
    check(1 <= a <= b, key, f"needs 1 <= FIRST <= LAST, got {text!r}")
    return a, b


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type or raise ConfigError naming the key."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        check(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and type(None) in get_args(tp):
            return None
        for a in args:
            try:
                return coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': cannot read {value!r} as {tp}")
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        check(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"config key '{key}': must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': must be an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': must be an integer, got {value!r}") from None
        check(f == int(f), key, f"must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': must be a number, got {value!r}") from None
    if tp is str:
        check(
            isinstance(value, (str, int, float)) and not isinstance(value, bool),
            key,
            f"must be a string, got {value!r}",
        )
        return str(value)
    return value


def check_types(section: Any, prefix: str) -> None:
    """Every field of ``section`` must read as its annotated type (nothing is changed)."""
    hints = get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if not dataclasses.is_dataclass(value):
            coerce(value, hints[f.name], f"{prefix}.{f.name}")
