"""The offline demo: generate a two-camera scene, process it for real, score it against truth.

Nothing is faked downstream of the pixels: the generated MP4s go through the same
``reid process`` code path (real OpenCV HOG detection on the rendered frames, ByteTrack, the
ReID model, the dichotomy matcher, the SQL gallery). The ReID weights are
``reid_pipeline/weights/demo.pt``, trained by this project's trainer on *other* generated
people (see ``reid_pipeline.demo.weights``).

Scoring: every tracklet is labelled with the ground-truth person its boxes overlap most
(IoU >= 0.5 in the same frame); then

* a person is *matched across cameras correctly* when every tracklet of that person, in
  every camera, got the same identity and that identity holds nobody else;
* an identity *merges simultaneous persons* when it holds tracklets of two persons that
  overlap in time in one camera (the matcher's one-place rule must prevent that).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config
from reid_pipeline.types import Sighting

log = logging.getLogger(__name__)

DEMO_OVERRIDES: dict[str, Any] = {
    # the demo weights' architecture (see demo_weights.demo_model_config)
    "model.backbone": "osnet_x0_25",
    "model.embed_dim": 128,
    "model.activation": "identity",
    "model.height": 64,
    "model.width": 32,
    "detector.kind": "hog",  # offline: no YOLO weights can be had
    "tracker.min_length": 3,
    # a threshold belongs to a model and its calibration: the demo weights were measured at
    # 0.8 (4/4 across cameras, with HOG and with the public detections); 0.9, the bundled
    # default's choice on Market's people, split one of the demo's persons across cameras
    "match.threshold": 0.8,
}


def demo_config_overrides() -> dict[str, Any]:
    """Config keys the demo sets unless the user set them (configs/demo.yaml mirrors these).

    Without ``weights/demo.pt`` the demo falls back to the bundled default model (trained on
    real people, Market-1501), with a warning: it runs, but that model tells the generated
    figures apart poorly.
    """
    from reid_pipeline.demo.weights import DEMO_CHECKPOINT

    if DEMO_CHECKPOINT.is_file():
        return {**DEMO_OVERRIDES, "model.checkpoint": str(DEMO_CHECKPOINT)}
    log.warning(
        "demo weights %s are not there (make them with `uv run python -m "
        "reid_pipeline.demo.weights`); using the bundled default model",
        DEMO_CHECKPOINT,
    )
    return {
        "detector.kind": "hog",
        "tracker.min_length": 3,
        "model.checkpoint": "default",
        "model.backbone": "osnet_x1_0",
    }


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class DemoScore:
    """The demo's result against ground truth."""

    persons: int
    cameras: list[str]
    identities: int
    tracklets: int
    tracklets_unmatched: int  # tracklets on no ground-truth person (false detections)
    persons_correct: list[int] = field(default_factory=list)
    persons_wrong: dict[int, str] = field(default_factory=dict)
    merged_simultaneous: list[tuple[int, int, int]] = field(default_factory=list)  # (id, p, q)
    identity_persons: dict[int, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return len(self.persons_correct) == self.persons and not self.merged_simultaneous

    def describe(self) -> str:
        lines = [
            (
                f"ground truth: {self.persons} persons, each walking through all "
                f"{len(self.cameras)} cameras ({', '.join(self.cameras)})"
            ),
            (
                f"identities found: {self.identities} (from {self.tracklets} tracklets; "
                f"{self.tracklets_unmatched} on no ground-truth person)"
            ),
            (
                f"persons matched across cameras correctly: {len(self.persons_correct)}/"
                f"{self.persons}"
            ),
            (
                f"identities merging two simultaneously visible persons: "
                f"{len(self.merged_simultaneous)}"
            ),
        ]
        for p, why in sorted(self.persons_wrong.items()):
            lines.append(f"  person {p}: {why}")
        for iid, p, q in self.merged_simultaneous:
            lines.append(
                f"  identity {iid} holds persons {p} and {q} at the same time in one camera"
            )
        return "\n".join(lines)


def score_against_truth(
    sightings: Iterable[Sighting], gt_csv: str | Path, min_iou: float = 0.5
) -> DemoScore:
    """Label tracklets with ground-truth persons and score the identities (module docstring)."""
    from reid_pipeline.datasets.scene import read_ground_truth

    gt = read_ground_truth(gt_csv)
    votes: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
    n_boxes: Counter[tuple[str, int]] = Counter()
    ident_of: dict[tuple[str, int], int | None] = {}
    first_ts: dict[tuple[str, int], float] = {}
    last_ts: dict[tuple[str, int], float] = {}
    for s in sightings:
        key = (s.camera, s.track)
        n_boxes[key] += 1
        ident_of[key] = s.identity
        first_ts[key] = min(first_ts.get(key, s.timestamp), s.timestamp)
        last_ts[key] = max(last_ts.get(key, s.timestamp), s.timestamp)
        best, best_iou = None, min_iou
        for person, box in gt.get(s.camera, {}).get(s.frame, []):
            v = _iou(tuple(float(x) for x in s.bbox), tuple(float(x) for x in box))
            if v >= best_iou:
                best, best_iou = person, v
        if best is not None:
            votes[key][best] += 1
    person_of: dict[tuple[str, int], int | None] = {}
    for key, n in n_boxes.items():
        top = votes[key].most_common(1)
        person_of[key] = top[0][0] if top and top[0][1] >= 0.5 * n else None
    persons = sorted({p for cam in gt.values() for rows in cam.values() for p, _ in rows})
    cameras = sorted(gt)
    ident_persons: dict[int, set[int]] = defaultdict(set)
    person_idents: dict[int, dict[str, set[int | None]]] = defaultdict(lambda: defaultdict(set))
    for key, p in person_of.items():
        iid = ident_of[key]
        if p is None:
            continue
        person_idents[p][key[0]].add(iid)
        if iid is not None:
            ident_persons[iid].add(p)
    score = DemoScore(
        persons=len(persons),
        cameras=cameras,
        identities=len({i for i in ident_of.values() if i is not None}),
        tracklets=len(n_boxes),
        tracklets_unmatched=sum(1 for p in person_of.values() if p is None),
        identity_persons={i: sorted(ps) for i, ps in sorted(ident_persons.items())},
    )
    # a merge: one identity on two different persons' tracklets that overlap in time in
    # one camera (two people at once - what the one-place rule must prevent)
    spans: dict[int, list[tuple[str, int, float, float]]] = defaultdict(list)
    for key, p in person_of.items():
        iid = ident_of[key]
        if p is not None and iid is not None:
            spans[iid].append((key[0], p, first_ts[key], last_ts[key]))
    for iid, sp in sorted(spans.items()):
        seen: set[tuple[int, int]] = set()
        for i, (ca, pa, a0, a1) in enumerate(sp):
            for cb, pb, b0, b1 in sp[i + 1 :]:
                pair = (min(pa, pb), max(pa, pb))
                if ca == cb and pa != pb and a0 <= b1 and b0 <= a1 and pair not in seen:
                    seen.add(pair)
                    score.merged_simultaneous.append((iid, *pair))
    for p in persons:
        per_cam = person_idents.get(p, {})
        missing = [c for c in cameras if not per_cam.get(c)]
        all_ids = set().union(*per_cam.values()) if per_cam else set()
        if missing:
            score.persons_wrong[p] = f"not tracked in camera(s) {', '.join(missing)}"
        elif None in all_ids:
            score.persons_wrong[p] = "a tracklet got no identity"
        elif len(all_ids) > 1:
            score.persons_wrong[p] = f"split over identities {sorted(all_ids)}"  # type: ignore[type-var]
        else:
            (iid,) = all_ids
            others = sorted(ident_persons[iid] - {p})  # type: ignore[index]
            if others:
                score.persons_wrong[p] = f"identity {iid} also holds person(s) {others}"
            else:
                score.persons_correct.append(p)
    return score


@dataclass
class DemoResult:
    scene_dir: Path
    process: Any  # runner.ProcessResult
    score: DemoScore

    def describe(self) -> str:
        return f"{self.process.describe()}\n\n{self.score.describe()}"


def run_demo(
    cfg: Config, people: int = 4, seed: int = 7, stop: Callable[[], bool] | None = None
) -> DemoResult:
    """Generate (or reuse) the scene under ``<out>/scene``, process it, score it."""
    from reid_pipeline.datasets.scene import demo_scene_spec, render_scene
    from reid_pipeline.pipeline.recorded import check_output_dir, process_videos

    out = check_output_dir(cfg.output.out)
    scene_dir = out / "scene"
    spec = demo_scene_spec(people=people, seed=seed)
    if not (scene_dir / "gt.csv").is_file() or not all(
        (scene_dir / f"{c.name}.mp4").is_file() for c in spec.cameras
    ):
        log.info(
            "generating the demo scene: %d people, cameras %s",
            people,
            [c.name for c in spec.cameras],
        )
        render_scene(spec, scene_dir)
    inputs = [(str(scene_dir / f"{c.name}.mp4"), c.name) for c in spec.cameras]
    result = process_videos(cfg, inputs, stop=stop)
    from reid_pipeline.gallery import Gallery

    with Gallery.open(result.db, cfg.gallery) as g:
        rows = [s for s in g.sightings() if s.camera in {c for _, c in inputs}]
    score = score_against_truth(rows, scene_dir / "gt.csv")
    return DemoResult(scene_dir, result, score)
