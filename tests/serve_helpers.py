"""What the console tests share: a gallery of generated people built through the gallery's
own repository (crops on disk, exemplars embedded by the bundled default model, the same
model the console's search loads), an annotated video written by ``write_annotated_video``,
and held-out query pictures of each person."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_pipeline.config import load_config
from reid_pipeline.gallery import Gallery
from reid_pipeline.types import Sighting, TrackedBox, Tracklet

PEOPLE = 6
SEED = 5150
CAMERAS = {1: "lobby", 2: "street"}
FPS = 10.0
T0 = 1_790_000_000.0  # Unix time of frame 0 of both cameras


@dataclass
class Built:
    db: Path
    ids: dict[int, int]  # generated person -> identity id
    queries: dict[int, Path]  # held-out picture of each person
    video: Path  # the lobby camera's annotated video
    tracklets: dict[int, list[int]] = field(default_factory=dict)  # identity -> tracklet ids


def console_config(**serve: Any) -> Any:
    """The run config of a console test (CPU, HOG for photos, serve.* as given)."""
    return load_config(
        overrides={
            "device": "cpu",
            "detector.kind": "hog",
            **{f"serve.{k}": v for k, v in serve.items()},
        }
    )


def people_crops(root: Path) -> dict[int, dict[int, list[Path]]]:
    """person -> camera -> crop files (generated, in time order)."""
    from reid_pipeline.datasets.scene import make_crops_dataset

    data = make_crops_dataset(root, people=PEOPLE, per_camera=4, seed=SEED)
    out: dict[int, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for p in sorted(data.glob("*/*.jpg")):
        m = re.match(r"(\d{4})_c(\d)s1_(\d{6})", p.name)
        assert m
        out[int(m[1])][int(m[2])].append(p)
    for cams in out.values():
        for files in cams.values():
            files.sort(key=lambda p: p.name[10:16])
    return out


def build_gallery(g: Gallery, root: Path, embed: Any) -> Built:
    """Fill the (empty, open) gallery ``g``: one identity per person, a tracklet per camera
    (frames ``100*pid + 40*cam`` on, every 5th), exemplars from ``embed``; write the lobby
    camera's annotated video into ``<root>/videos``. ``embed(images) -> (vectors, version)``."""
    from reid_pipeline.report.video import write_annotated_video

    people = people_crops(root / "people")
    sources = {
        c: g.begin_source(name, f"generated-{name}").source_id for c, name in CAMERAS.items()
    }
    ids: dict[int, int] = {}
    queries: dict[int, Path] = {}
    tracklets: dict[int, list[int]] = defaultdict(list)
    for pid, cams in sorted(people.items()):
        iid = g.create_identity()
        ids[pid] = iid
        queries[pid] = cams[1][0]
        for c, files in sorted(cams.items()):
            imgs = [cv2.imread(str(f)) for f in files[1:]]
            f0 = 100 * pid + 40 * c
            boxes = [
                TrackedBox(
                    CAMERAS[c],
                    f0 + 5 * k,
                    T0 + (f0 + 5 * k) / FPS,
                    (8.0, 8.0, 72.0, 136.0),
                    0.9,
                    pid,
                )
                for k in range(len(imgs))
            ]
            tr = Tracklet(CAMERAS[c], pid, boxes, imgs, [b.frame_index for b in boxes], True)
            tid = g.record_tracklet(sources[c], tr, identity_id=iid, score=0.9)
            tracklets[iid].append(tid)
            vecs, version = embed(imgs)
            g.add_exemplars(iid, vecs, version, tid, keep=5)
    # the lobby camera's source video (a moving gradient) and its annotated video
    src = root / "lobby_frames"
    src.mkdir()
    n = 100 * PEOPLE + 100
    for i in range(n):
        img = np.full((120, 160, 3), (i * 3) % 255, np.uint8)
        cv2.circle(img, (i % 160, 60), 12, (0, 0, 255), -1)
        cv2.imwrite(str(src / f"{i:05d}.jpg"), img)
    sightings = [
        Sighting(s.camera, s.frame, s.timestamp, s.bbox, s.confidence, s.track, s.identity, s.score)
        for s in g.sightings(camera="lobby")
    ]
    videos = root / "videos"
    videos.mkdir()
    video = write_annotated_video(str(src), "lobby", sightings, videos / "lobby.webm", fps=FPS)
    assert g.sqlite_file is None or g.sqlite_file.parent == root
    return Built(Path(str(g.sqlite_file or "")), ids, queries, video, dict(tracklets))
