"""The whole configuration of a run: one section per stage (``Config``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, cast

from reid_pipeline.config.base import DeviceName, Section, check, check_device, check_types
from reid_pipeline.config.detect import DetectorConfig
from reid_pipeline.config.distributed import DistributedConfig
from reid_pipeline.config.embed import ModelConfig
from reid_pipeline.config.evaluate import EvalConfig, MotEvalConfig
from reid_pipeline.config.gallery import GalleryConfig
from reid_pipeline.config.match import MatchConfig
from reid_pipeline.config.output import OutputConfig
from reid_pipeline.config.serve import ServeConfig
from reid_pipeline.config.sources import InputConfig, StreamConfig
from reid_pipeline.config.track import TrackerConfig
from reid_pipeline.config.train import TrainConfig


@dataclass(frozen=True)
class Config:
    """Frozen: a run's config never changes under it (``dataclasses.replace`` makes another)."""

    device: DeviceName = "auto"
    log_level: str = "INFO"
    input: InputConfig = field(default_factory=InputConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    mot_eval: MotEvalConfig = field(default_factory=MotEvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def validate(self) -> None:
        check_device("device", self.device)
        check(
            self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "log_level",
            f"must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}",
        )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                check_types(value, f.name)
                cast(Section, value).validate(f.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
