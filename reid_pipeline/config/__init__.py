"""Typed, validated, frozen configuration.

One schema per stage (``sources``, ``detect``, ``track``, ``embed``, ``match``, ``gallery``,
``output``, ``train``, ``evaluate``), composed into ``Config`` (``schema``), and the loader
(``loader``). YAML files (``configs/*.yaml``) fill it, CLI flags override single keys (every
flag is a key: ``--detector hog`` is ``detector.kind=hog``), and ``--set section.key=value``
reaches any key. A wrong value raises ``ConfigError`` naming the dotted key.

Every section is a frozen dataclass: a run's config never changes under it; a variant is
``dataclasses.replace(cfg, ...)`` or ``with_key(cfg, "detector.kind", "hog")``. Settings
only one command uses (``reid gallery``'s ``manage``, ``reid bench``'s ``bench``, ...) live
with that command and are read with ``load_section``. The resolved config is saved beside
every checkpoint (``to_dict``) and, with ``write_resolved``, beside every run's outputs.
"""

from __future__ import annotations

from reid_pipeline.config.base import (
    DeviceName,
    Section,
    check,
    check_device,
    coerce,
    frame_range,
)
from reid_pipeline.config.detect import DetectorConfig
from reid_pipeline.config.embed import ModelConfig
from reid_pipeline.config.evaluate import EvalConfig, MotEvalConfig
from reid_pipeline.config.gallery import GalleryConfig
from reid_pipeline.config.loader import (
    COMMAND_SECTIONS,
    RESOLVED_NAME,
    load_config,
    load_section,
    parse_set,
    read_config_file,
    read_yaml,
    resolved_dict,
    with_key,
    write_resolved,
)
from reid_pipeline.config.match import MatchConfig
from reid_pipeline.config.output import OutputConfig
from reid_pipeline.config.schema import Config
from reid_pipeline.config.sources import InputConfig, StreamConfig
from reid_pipeline.config.track import TrackerConfig
from reid_pipeline.config.train import TrainConfig
from reid_pipeline.errors import ConfigError

__all__ = [
    "COMMAND_SECTIONS",
    "RESOLVED_NAME",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "DeviceName",
    "EvalConfig",
    "GalleryConfig",
    "InputConfig",
    "MatchConfig",
    "ModelConfig",
    "MotEvalConfig",
    "OutputConfig",
    "Section",
    "StreamConfig",
    "TrackerConfig",
    "TrainConfig",
    "check",
    "check_device",
    "coerce",
    "frame_range",
    "load_config",
    "load_section",
    "parse_set",
    "read_config_file",
    "read_yaml",
    "resolved_dict",
    "with_key",
    "write_resolved",
]
