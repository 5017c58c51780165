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
(ROOT / ".yolo").mkdir(exist_ok=True)
