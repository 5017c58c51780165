"""Test-wide settings: no network, no downloads, no progress bars, project-local caches."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".yolo"))
os.environ.setdefault("REID_NO_PROGRESS", "1")
os.environ.setdefault("TORCH_HOME", str(ROOT / ".yolo" / "torch"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("REID_CACHE_DIR", str(ROOT / ".yolo" / "reid"))  # ONNX exports
(ROOT / ".yolo").mkdir(exist_ok=True)


# ---------------------------------------------------------------- shared fixtures

from collections.abc import Iterator  # noqa: E402 - after the environment set-up above

import pytest  # noqa: E402


@pytest.fixture
def gallery_options() -> dict[str, object]:
    """``GalleryConfig`` keys of the ``gallery`` fixture; a test module overrides this."""
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery(
    request: pytest.FixtureRequest, tmp_path: Path, gallery_options: dict[str, object]
) -> Iterator[object]:
    """An empty, migrated gallery on SQLite and on PostgreSQL (a private schema of the CI
    server's database ``test``; an unreachable server fails the test, never skips it)."""
    from gallery_helpers import open_gallery

    with open_gallery(request.param, tmp_path, **gallery_options) as g:
        yield g
