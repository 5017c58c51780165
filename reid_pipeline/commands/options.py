"""Settings that belong to one command, not to the run (``Config``).

Each is a frozen dataclass naming its section: the command declares it with
``common.add_options`` and reads it with ``common.options_from_args``; it fills from the
command's flags, ``--set section.key=value`` and the ``section:`` mapping of a ``--config``
file, and its errors name ``section.key`` as the run's config does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reid_pipeline.config import check


@dataclass(frozen=True)
class ReportOptions:
    """``reid report``: the static HTML site of a gallery."""

    section: ClassVar[str] = "report"
    aliases: ClassVar[dict[str, str]] = {}

    out: str = ""  # report folder; empty: <db folder>/report (SQLite)
    page_size: int = 50  # identity cards per index page
    crops_per_camera: int = 24  # crops per camera on an identity page (spread over time)
    copy_crops: bool = False  # copy crops into the report (portable, but outside erasure)
    title: str = "Identities"
    videos: str = ""  # annotated videos (<camera>.mp4); empty: <db folder>/videos (SQLite)

    def validate(self, p: str) -> None:
        check(self.page_size >= 1, f"{p}.page_size", f"must be >= 1, got {self.page_size}")
        check(
            self.crops_per_camera >= 1,
            f"{p}.crops_per_camera",
            f"must be >= 1, got {self.crops_per_camera}",
        )
        check(bool(self.title.strip()), f"{p}.title", "must not be empty")
        check(
            not self.videos.lower().endswith((".mp4", ".avi", ".mkv", ".webm")),
            f"{p}.videos",
            f"is the folder of annotated videos, not a video: {self.videos!r}",
        )


@dataclass(frozen=True)
class SearchOptions:
    """``reid search``: who in the gallery is the person in a photo."""

    section: ClassVar[str] = "search"
    aliases: ClassVar[dict[str, str]] = {}

    top: int = 10  # identities listed
    html: str = ""  # also write the result as a page here
    mode: Literal["auto", "frame", "crop"] = "auto"  # auto: detect a person, else take as crop
    min_probability: float = 0.0  # hide identities below this probability

    def validate(self, p: str) -> None:
        check(self.top >= 1, f"{p}.top", f"must be >= 1, got {self.top}")
        check(
            0.0 <= self.min_probability < 1.0,
            f"{p}.min_probability",
            f"must be in [0, 1), got {self.min_probability}",
        )


AGE_RE = re.compile(r"(?=.*[1-9])\d+(\.\d+)?[smhdw]?")


@dataclass(frozen=True)
class ManageOptions:
    """``reid gallery merge|split|rename|delete|purge|export``."""

    section: ClassVar[str] = "manage"
    aliases: ClassVar[dict[str, str]] = {}

    export_format: Literal["csv", "jsonl"] = "csv"
    export_out: str = ""  # file for `reid gallery export`; empty: standard output
    export_identity: int = 0  # export one identity only (a subject access request); 0: all
    force: bool = False  # merge identities even if seen at the same time on one camera
    yes: bool = False  # delete/purge without asking for confirmation
    older_than: str = ""  # purge age, e.g. 30d, 12h, 2w; empty: gallery.retention_days

    def validate(self, p: str) -> None:
        check(
            not self.export_out.endswith(("/", "\\")),
            f"{p}.export_out",
            f"must be a file, not a folder: {self.export_out!r}",
        )
        check(
            self.export_identity >= 0,
            f"{p}.export_identity",
            f"is an identity id (>= 1) or 0 for all, got {self.export_identity}",
        )
        check(
            not self.older_than or AGE_RE.fullmatch(self.older_than.strip().lower()) is not None,
            f"{p}.older_than",
            f"must be a positive age like 30d, 12h, 2w or 90m, got {self.older_than!r}",
        )


BENCH_STAGES = ("scoring", "embedder", "detector", "end_to_end")


@dataclass(frozen=True)
class BenchOptions:
    """``reid bench``: which benchmark, how big, where the JSON goes."""

    section: ClassVar[str] = "bench"
    aliases: ClassVar[dict[str, str]] = {}

    size: Literal["small", "full"] = "small"  # small: seconds on a CPU (CI); full: the H100 table
    stages: list[str] = field(default_factory=lambda: list(BENCH_STAGES))
    json: str = ""  # also write the results here (JSON)

    def validate(self, p: str) -> None:
        bad = [s for s in self.stages if s not in BENCH_STAGES]
        check(
            not bad and bool(self.stages),
            f"{p}.stages",
            f"unknown stage(s) {bad}; choose from {list(BENCH_STAGES)}",
        )


@dataclass(frozen=True)
class DemoOptions:
    """``reid demo``: the generated scene (the run itself is an ordinary ``Config``)."""

    section: ClassVar[str] = "demo"
    # the keys these had in the run's config before (README and benchmark notes use them)
    aliases: ClassVar[dict[str, str]] = {
        "output.demo_people": "demo.people",
        "output.demo_seed": "demo.seed",
    }

    people: int = 4  # people in the generated scene
    seed: int = 7  # scene seed (the demo weights trained on seeds >= 1000)

    def validate(self, p: str) -> None:
        check(2 <= self.people <= 12, f"{p}.people", f"must be in [2, 12], got {self.people}")
        check(
            0 <= self.seed < 1000,
            f"{p}.seed",
            f"must be in [0, 1000) (seeds >= 1000 made the demo's training people), "
            f"got {self.seed}",
        )


COMMAND_OPTIONS: tuple[type, ...] = (
    ReportOptions,
    SearchOptions,
    ManageOptions,
    BenchOptions,
    DemoOptions,
)
