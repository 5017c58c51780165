"""What a run writes (``output``): folder, annotated videos, HTML."""

from __future__ import annotations

from dataclasses import dataclass

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class OutputConfig:
    out: str = "runs/latest"
    video: bool = True  # annotated video per camera
    html: bool = True
    crops_per_camera: int = 4  # crops per identity and camera in the HTML report

    def validate(self, p: str) -> None:
        check(bool(self.out), f"{p}.out", "must not be empty")
        check(self.crops_per_camera >= 0, f"{p}.crops_per_camera", "must be >= 0")
