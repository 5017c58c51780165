"""Generated multi-camera scenes with ground truth: the offline demo's footage.

Why generated: the demo must run on a fresh machine with no network, and the project may
not redistribute real footage. The figures are drawn to look like pedestrians to a real
detector (OpenCV's HOG people detector finds them): head with hair, shaded torso with a
clothing pattern, two-segment legs and arms swinging with a walking cycle, shoes, an
optional bag, a soft ground shadow. Each camera has its own background, light (gain, colour
cast, gamma) and scale; the same people walk through every camera, sometimes two at once,
and the true box of every visible person is written beside the videos (``gt.csv``).

The same renderer makes the training crops of the demo weights (``make_crops_dataset``)
from *other* random people, so the demo's people are never seen in training.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BGR = tuple[int, int, int]

PATTERNS = ("solid", "hstripes", "vsplit", "logo", "check")
BOTTOMS = ("trousers", "shorts", "skirt")


@dataclass(frozen=True)
class Appearance:
    """Everything that makes one generated person look like themselves in every camera."""

    skin: BGR
    hair: BGR
    long_hair: bool
    top: BGR
    top2: BGR  # second colour of the pattern
    pattern: str
    long_sleeves: bool
    bottom: BGR
    bottom_kind: str
    shoes: BGR
    bag: BGR | None
    height: float  # relative body height, ~0.9-1.1
    build: float  # relative body width, ~0.85-1.15


def _color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> BGR:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def _distinct_color(rng: np.random.Generator, avoid: list[BGR], min_dist: float = 90) -> BGR:
    """A saturated-ish colour far from ``avoid`` so generated people differ visibly."""
    best: BGR = _color(rng)
    best_d = -1.0
    for _ in range(40):
        c = _color(rng)
        d = min((float(np.linalg.norm(np.subtract(c, a))) for a in avoid), default=1e9)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def random_people(n: int, seed: int) -> list[Appearance]:
    """``n`` random, mutually distinct looking people (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    skins = [(140, 180, 225), (110, 150, 200), (80, 120, 170), (60, 90, 130), (45, 65, 95)]
    hairs = [(20, 20, 25), (30, 50, 90), (60, 110, 170), (150, 150, 150), (20, 40, 60)]
    people: list[Appearance] = []
    tops: list[BGR] = []
    for _ in range(n):
        top = _distinct_color(rng, tops)
        tops.append(top)
        has_bag = rng.random() < 0.35
        people.append(
            Appearance(
                skin=skins[int(rng.integers(len(skins)))],
                hair=hairs[int(rng.integers(len(hairs)))],
                long_hair=bool(rng.random() < 0.35),
                top=top,
                top2=_distinct_color(rng, [top], 120),
                pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
                long_sleeves=bool(rng.random() < 0.6),
                bottom=_distinct_color(rng, [top], 80),
                bottom_kind=BOTTOMS[int(rng.choice(3, p=[0.7, 0.15, 0.15]))],
                shoes=_color(rng, 10, 120),
                bag=_color(rng) if has_bag else None,
                height=float(rng.uniform(0.92, 1.08)),
                build=float(rng.uniform(0.88, 1.12)),
            )
        )
    return people


def _shade(c: BGR, f: float) -> BGR:
    return tuple(int(min(255, max(0, v * f))) for v in c)  # type: ignore[return-value]


def render_person(
    app: Appearance, height_px: int, phase: float, direction: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one walking person on a transparent canvas.

    Returns (bgr, alpha) of shape (h, w, 3) / (h, w) float32 in [0, 1]; the feet touch the
    bottom row and the body is centred horizontally. ``phase`` is the walking-cycle angle
    (radians), ``direction`` +1 walks right, -1 walks left (the figure is drawn in a
    three-quarter view: the torso stays wide, the limbs swing, the face turns).
    """
    import cv2

    H = max(24, height_px)
    W = int(H * 0.62)
    ss = 2  # draw at 2x and downsample: anti-aliased edges
    h2, w2 = H * ss, W * ss
    img = np.zeros((h2, w2, 3), np.uint8)
    mask = np.zeros((h2, w2), np.uint8)
    u = h2 / 100.0  # one body unit: 1% of the height
    cx = w2 / 2
    bw = app.build
    d = direction

    def P(x: float, y: float) -> tuple[int, int]:
        return round(cx + x * u), round(y * u)

    def limb(a: tuple[int, int], b: tuple[int, int], width: float, col: BGR) -> None:
        t = max(1, round(width * u))
        cv2.line(img, a, b, col, t, cv2.LINE_AA)
        cv2.line(mask, a, b, 255, t, cv2.LINE_AA)

    def poly(pts: list[tuple[int, int]], col: BGR) -> None:
        arr = np.array(pts, np.int32)
        cv2.fillPoly(img, [arr], col, cv2.LINE_AA)
        cv2.fillPoly(mask, [arr], 255, cv2.LINE_AA)

    def ellipse(c: tuple[int, int], ax: tuple[float, float], col: BGR) -> None:
        axes = (max(1, int(ax[0] * u)), max(1, int(ax[1] * u)))
        cv2.ellipse(img, c, axes, 0, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(mask, c, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)

    swing = math.sin(phase)
    hip_y, knee_len, shin_len = 52.0, 23.0, 23.0
    shoulder_y, arm_len = 19.0, 33.0

    def leg(sign: float, front: bool) -> None:
        a = sign * swing * 0.45  # thigh angle from vertical
        bend = max(0.0, -sign * math.cos(phase)) * 0.6  # knee bends on the back swing
        hip = (sign * 4.5 * bw * 0.4, hip_y)
        knee = (hip[0] + d * knee_len * math.sin(a), hip[1] + knee_len * math.cos(a))
        sa = a - d * bend
        ankle = (knee[0] + d * shin_len * math.sin(sa) * d, knee[1] + shin_len * math.cos(sa))
        f = 1.0 if front else 0.72
        if app.bottom_kind == "trousers":
            limb(P(*hip), P(*knee), 10 * bw, _shade(app.bottom, f))
            limb(P(*knee), P(*ankle), 8.5 * bw, _shade(app.bottom, f))
        else:
            limb(P(*hip), P(*knee), 8 * bw, _shade(app.skin, f))
            limb(P(*knee), P(*ankle), 7 * bw, _shade(app.skin, f))
            if app.bottom_kind == "shorts":
                mid = ((hip[0] + knee[0]) / 2, (hip[1] + knee[1]) / 2)
                limb(P(*hip), P(*mid), 10.5 * bw, _shade(app.bottom, f))
        toe = (ankle[0] + d * 6.0, ankle[1] + 1.0)
        limb(P(*ankle), P(*toe), 5.0, _shade(app.shoes, f))

    def arm(sign: float, front: bool) -> None:
        a = -sign * swing * 0.5
        sh = (sign * 12 * bw * 0.8, shoulder_y + 2)
        elbow = (sh[0] + d * 16 * math.sin(a), sh[1] + 16 * math.cos(a))
        fa = a + d * 0.35 * abs(math.sin(phase))
        hand = (elbow[0] + d * 15 * math.sin(fa), elbow[1] + 15 * math.cos(fa))
        f = 1.0 if front else 0.7
        sleeve = _shade(app.top, f)
        limb(P(*sh), P(*elbow), 6.5 * bw, sleeve)
        limb(P(*elbow), P(*hand), 5.5 * bw, sleeve if app.long_sleeves else _shade(app.skin, f))
        ellipse(P(*hand), (2.6, 2.6), _shade(app.skin, f))
        _ = arm_len

    # back limbs first (darker), then body, then front limbs
    leg(-1.0, False)
    arm(-1.0, False)
    if app.bag is not None:  # backpack on the back side
        bx = -d * 12 * bw
        poly([P(bx - 5, 20), P(bx + 5, 20), P(bx + 6, 44), P(bx - 6, 44)], _shade(app.bag, 0.9))
    # torso: a tapered, shaded block with the clothing pattern
    tw, hw = 13.5 * bw, 10.5 * bw
    torso = [P(-tw, shoulder_y), P(tw, shoulder_y), P(hw, hip_y + 2), P(-hw, hip_y + 2)]
    poly(torso, app.top)
    tmask = np.zeros((h2, w2), np.uint8)
    cv2.fillPoly(tmask, [np.array(torso, np.int32)], 255)
    pat = np.zeros_like(img)
    y0, y1 = int(shoulder_y * u), int((hip_y + 2) * u)
    if app.pattern == "hstripes":
        step = max(2, int(5 * u))
        for y in range(y0, y1, 2 * step):
            pat[y : y + step] = app.top2
    elif app.pattern == "vsplit":
        pat[:, : int(cx)] = app.top2
    elif app.pattern == "logo":
        cv2.circle(pat, P(0, 31), max(2, int(6 * u)), app.top2, -1, cv2.LINE_AA)
    elif app.pattern == "check":
        step = max(2, int(6 * u))
        for y in range(y0, y1, step):
            for x in range(0, w2, step):
                if ((y - y0) // step + x // step) % 2 == 0:
                    pat[y : y + step, x : x + step] = app.top2
    if app.pattern != "solid":
        sel = (tmask > 0) & (pat.sum(axis=2) > 0)
        img[sel] = pat[sel]
    if app.bottom_kind == "skirt":
        poly(
            [P(-hw, hip_y), P(hw, hip_y), P(hw + 5, hip_y + 17), P(-hw - 5, hip_y + 17)], app.bottom
        )
    else:
        poly([P(-hw, hip_y - 1), P(hw, hip_y - 1), P(hw, hip_y + 5), P(-hw, hip_y + 5)], app.bottom)
    leg(1.0, True)
    # neck and head
    limb(P(0, 11), P(0, shoulder_y + 1), 6, app.skin)
    ellipse(P(d * 0.8, 7.5), (5.6, 6.8), app.skin)
    ellipse(P(-d * 0.8, 4.0), (5.9, 4.2), app.hair)
    if app.long_hair:
        poly([P(-d * 5.8, 4), P(-d * 1.0, 4), P(-d * 2.0, 17), P(-d * 6.5, 16)], app.hair)
    cv2.circle(img, P(d * 3.5, 7.0), max(1, int(0.7 * u)), (30, 30, 30), -1, cv2.LINE_AA)
    arm(1.0, True)

    # shading: light from above-left, darker towards the far side and the feet
    xs = np.linspace(-1, 1, w2, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h2, dtype=np.float32)[:, None]
    shade = 1.12 - 0.22 * (xs * d + 1) / 2 - 0.18 * ys
    shaded = np.clip(img.astype(np.float32) * shade[..., None], 0, 255)
    out = cv2.resize(shaded, (W, H), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask.astype(np.float32) / 255.0, (W, H), interpolation=cv2.INTER_AREA)
    return out, alpha


def composite(
    frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int
) -> tuple[int, int, int, int] | None:
    """Alpha-blend a sprite at (x0, y0); returns the visible tight box of the body or None."""
    fh, fw = frame.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(fw, x0 + w), min(fh, y0 + h)
    if xb <= xa or yb <= ya:
        return None
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    s = rgb[ya - y0 : yb - y0, xa - x0 : xb - x0]
    roi = frame[ya:yb, xa:xb].astype(np.float32)
    frame[ya:yb, xa:xb] = (roi * (1 - a) + s * a).astype(np.uint8)
    cols = np.where(a[..., 0].max(axis=0) > 0.3)[0]
    rows = np.where(a[..., 0].max(axis=1) > 0.3)[0]
    if len(cols) == 0 or len(rows) == 0:
        return None
    return xa + int(cols[0]), ya + int(rows[0]), xa + int(cols[-1]) + 1, ya + int(rows[-1]) + 1


# ---------------------------------------------------------------- backgrounds and cameras


@dataclass(frozen=True)
class CameraStyle:
    """How one camera sees the world: background kind, light and the people's scale."""

    name: str
    background: str  # "indoor" or "street"
    person_height: int  # px of a height-1.0 person
    gain: float = 1.0
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # BGR multipliers
    gamma: float = 1.0
    floor_y: float = 0.88  # feet line, fraction of the frame height
    noise: float = 3.0  # sensor noise sigma


def make_background(kind: str, w: int, h: int, seed: int) -> np.ndarray:
    """A plausible static background with structure (edges a detector must ignore)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    if kind == "indoor":
        horizon = int(h * 0.55)
        img[:horizon] = (170, 195, 215)  # beige wall
        for x in range(0, w, int(w / 5)):  # wall panels
            cv2.line(img, (x, 0), (x, horizon), (150, 175, 195), 2)
        for _ in range(2):  # doors / posters
            x = int(rng.integers(10, w - 80))
            col = tuple(int(v) for v in rng.integers(60, 200, 3))
            cv2.rectangle(img, (x, int(horizon * 0.25)), (x + int(w * 0.09), horizon - 4), col, -1)
        img[horizon:] = (120, 125, 130)  # floor
        for i in range(-12, 13):  # floor tiles in perspective
            x_far = w / 2 + i * w / 14
            x_near = w / 2 + i * w / 4
            cv2.line(img, (int(x_far), horizon), (int(x_near), h), (105, 110, 115), 1)
        y = horizon
        k = 6
        while y < h:
            cv2.line(img, (0, y), (w, y), (105, 110, 115), 1)
            y += k
            k = int(k * 1.35) + 1
    else:  # street: sky, buildings, trees, pavement, road
        horizon = int(h * 0.5)
        for y in range(horizon):
            t = y / max(1, horizon)
            img[y] = (int(235 - 40 * t), int(200 - 20 * t), int(160 - 10 * t))
        x = 0
        while x < w:  # low-rise facades with wide, low-contrast shop windows
            bw = int(rng.integers(w // 5, w // 3))
            bh = int(rng.integers(horizon // 2, horizon))
            facade = np.array([int(v) for v in rng.integers(110, 170, 3)])
            cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), facade.tolist(), -1)
            win = np.clip(facade + 18, 0, 255).tolist()
            for wy in range(horizon - bh + 10, horizon - 20, 26):
                cv2.rectangle(img, (x + 6, wy), (x + bw - 6, wy + 9), win, -1)
            x += bw
        img[horizon:] = (95, 100, 95)  # pavement
        for yy in range(horizon, h, 14):
            cv2.line(img, (0, yy), (w, yy), (85, 90, 85), 1)
        img[int(h * 0.95) :] = (60, 60, 60)  # road
        for _ in range(2):  # round bushes
            tx = int(rng.integers(0, w))
            cv2.ellipse(img, (tx, horizon - 6), (34, 18), 0, 0, 360, (50, 105, 60), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (3, 3), 0)


def apply_light(img: np.ndarray, style: CameraStyle, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    x = np.power(x, style.gamma) * style.gain * np.asarray(style.cast, np.float32)
    x = x * 255.0 + rng.normal(0.0, style.noise, x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the scene


@dataclass(frozen=True)
class Walk:
    """One person crossing one camera's view: enters at ``start`` from the left or right."""

    person: int
    start: int  # first frame
    direction: int  # +1 left->right, -1 right->left
    depth: float = 0.0  # feet line offset (fraction of frame height), also scales a bit
    speed: float = 1.0  # relative walking speed


@dataclass
class SceneSpec:
    """A complete scene: people, cameras and who walks where and when."""

    people: int = 4
    seed: int = 7
    width: int = 480
    height: int = 272
    fps: float = 10.0
    frames: int = 170
    cameras: list[CameraStyle] = field(default_factory=list)
    walks: dict[str, list[Walk]] = field(default_factory=dict)


def demo_scene_spec(people: int = 4, seed: int = 7) -> SceneSpec:
    """The demo's two cameras: an indoor lobby and a darker, bluish street at a smaller scale.

    In every camera every person walks through once; two people are visible simultaneously
    in each camera (the 'no merge across simultaneous persons' check needs that).
    """
    cams = [
        CameraStyle(
            "lobby",
            "indoor",
            person_height=158,
            gain=1.05,
            cast=(0.95, 1.0, 1.05),
            gamma=0.95,
            floor_y=0.9,
        ),
        CameraStyle(
            "street",
            "street",
            person_height=132,
            gain=0.8,
            cast=(1.12, 1.0, 0.9),
            gamma=1.1,
            floor_y=0.92,
        ),
    ]
    rng = np.random.default_rng(seed + 1)
    walks: dict[str, list[Walk]] = {}
    for ci, cam in enumerate(cams):
        order = [int(p) for p in rng.permutation(people)] if ci else list(range(people))
        ws: list[Walk] = []
        t = 0
        for k, p in enumerate(order):
            # people walk in pairs: the second starts while the first is still in view,
            # walking the same way behind it, so both are visible at once without overlap;
            # the next pair comes once the previous one has left
            direction = 1 if (k // 2 + ci) % 2 == 0 else -1
            ws.append(Walk(p, t, direction))
            t += 16 if k % 2 == 0 else 58
        walks[cam.name] = ws
    frames = max(w.start for ws in walks.values() for w in ws) + 60
    return SceneSpec(people=people, seed=seed, frames=frames, cameras=cams, walks=walks)


def _walk_state(w: Walk, frame: int, width: int, person_h: float) -> tuple[float, float] | None:
    """(centre x, walking phase) of a walk at ``frame``, or None when out of view."""
    t = frame - w.start
    if t < 0:
        return None
    step = person_h * 0.075 * w.speed  # px per frame: ~ a brisk walk at 10 fps
    half = person_h * 0.35
    x = -half + t * step if w.direction > 0 else width + half - t * step
    if x < -half - 1 or x > width + half + 1:
        return None
    phase = t * 0.55 * w.speed
    return x, phase


def render_scene(spec: SceneSpec, out_dir: str | Path) -> dict[str, Path]:
    """Write one MP4 per camera plus ``gt.csv`` and ``scene.json``; returns camera -> video.

    ``gt.csv`` rows: camera, frame, person, x1, y1, x2, y2 (tight visible body box).
    """
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    people = random_people(spec.people, spec.seed)
    videos: dict[str, Path] = {}
    gt_rows: list[tuple[str, int, int, int, int, int, int]] = []
    for ci, cam in enumerate(spec.cameras):
        rng = np.random.default_rng(spec.seed * 100 + ci)
        bg = make_background(cam.background, spec.width, spec.height, spec.seed * 10 + ci)
        path = out / f"{cam.name}.mp4"
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter.fourcc(*"mp4v"), spec.fps, (spec.width, spec.height)
        )
        if not writer.isOpened():
            raise OSError(f"cannot write video {path}")
        sprite_cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        for f in range(spec.frames):
            frame = bg.copy()
            visible = []
            for w in spec.walks.get(cam.name, []):
                app = people[w.person]
                ph = cam.person_height * app.height * (1 + w.depth)
                st = _walk_state(w, f, spec.width, ph)
                if st is None:
                    continue
                visible.append((w, app, ph, st))
            # draw far (smaller feet y) first
            visible.sort(key=lambda v: v[0].depth)
            for w, app, ph, (x, phase) in visible:
                q = round((phase % (2 * math.pi)) * 8)
                key = (w.person, round(ph), q * w.direction)
                if key not in sprite_cache:
                    sprite_cache[key] = render_person(app, round(ph), q / 8, w.direction)
                rgb, alpha = sprite_cache[key]
                feet = int(spec.height * (cam.floor_y + w.depth))
                # soft ground shadow
                cv2.ellipse(
                    frame,
                    (int(x), feet - 1),
                    (int(ph * 0.16), max(2, int(ph * 0.025))),
                    0,
                    0,
                    360,
                    (50, 50, 50),
                    -1,
                    cv2.LINE_AA,
                )
                box = composite(
                    frame, rgb, alpha, int(x - alpha.shape[1] / 2), feet - alpha.shape[0]
                )
                if box is not None:
                    gt_rows.append((cam.name, f, w.person, *box))
            frame = apply_light(frame, cam, rng)
            writer.write(frame)
        writer.release()
        videos[cam.name] = path
    with open(out / "gt.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["camera", "frame", "person", "x1", "y1", "x2", "y2"])
        wr.writerows(gt_rows)
    meta = {
        "fps": spec.fps,
        "frames": spec.frames,
        "width": spec.width,
        "height": spec.height,
        "seed": spec.seed,
        "people": [asdict(p) for p in people],
        "cameras": [asdict(c) for c in spec.cameras],
        "walks": {k: [asdict(w) for w in v] for k, v in spec.walks.items()},
        "videos": {k: v.name for k, v in videos.items()},
    }
    (out / "scene.json").write_text(json.dumps(meta, indent=1))
    return videos


def read_ground_truth(path: str | Path) -> dict[str, dict[int, list[tuple[int, tuple[int, ...]]]]]:
    """camera -> frame -> [(person, (x1, y1, x2, y2))] from a ``gt.csv``."""
    out: dict[str, dict[int, list[tuple[int, tuple[int, ...]]]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            box = tuple(int(row[k]) for k in ("x1", "y1", "x2", "y2"))
            out.setdefault(row["camera"], {}).setdefault(int(row["frame"]), []).append(
                (int(row["person"]), box)
            )
    return out


def make_crops_dataset(
    root: str | Path,
    people: int = 120,
    per_camera: int = 8,
    seed: int = 1000,
    height: int = 128,
    width: int = 64,
) -> Path:
    """A Market-1501-style dataset of generated pedestrians for training the demo weights.

    Layout ``<root>/bounding_box_train|query|bounding_box_test/PPPP_cCs1_FFFFFF_00.jpg``:
    two "cameras" per person (indoor and street styles, with the demo's different light and
    random scale/jitter), so the model learns what survives a camera change. Seeds differ
    from the demo scene's (``seed`` >= 1000), so the demo's people are not in training.
    The last fifth of the identities form query/gallery for validation.
    """
    import cv2

    rng = np.random.default_rng(seed)
    apps = random_people(people, seed)
    styles = demo_scene_spec().cameras
    base = Path(root)
    dirs = {k: base / k for k in ("bounding_box_train", "query", "bounding_box_test")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    bgs = {
        (s.name, k): make_background(s.background, 480, 272, seed + 17 * k + i)
        for i, s in enumerate(styles)
        for k in range(3)
    }
    n_train = people - max(2, people // 5)
    for pid, app in enumerate(apps, start=1):
        for ci, style in enumerate(styles):
            for k in range(per_camera):
                ph = style.person_height * app.height * float(rng.uniform(0.8, 1.15))
                rgb, alpha = render_person(
                    app, round(ph), float(rng.uniform(0, 2 * math.pi)), int(rng.choice([-1, 1]))
                )
                bg = bgs[(style.name, int(rng.integers(3)))]
                frame = bg.copy()
                x0 = int(rng.integers(20, 480 - alpha.shape[1] - 20))
                y0 = int(272 * style.floor_y) - alpha.shape[0]
                box = composite(frame, rgb, alpha, x0, max(0, y0))
                if box is None:
                    continue
                # every image gets its own light (gain, colour cast, gamma): identity must be
                # learnt from clothing and shape, not from the camera's colour rendering
                cast = tuple(float(v) for v in rng.uniform(0.82, 1.18, 3))
                light = CameraStyle(
                    style.name,
                    style.background,
                    style.person_height,
                    gain=float(rng.uniform(0.6, 1.2)),
                    cast=cast,  # type: ignore[arg-type]
                    gamma=float(rng.uniform(0.8, 1.25)),
                    noise=style.noise,
                )
                frame = apply_light(frame, light, rng)
                x1, y1, x2, y2 = box
                bw, bh = x2 - x1, y2 - y1
                # detector-like box error: HOG's boxes on the demo scene miss the true box
                # by these standard deviations (fractions of its width, height; measured
                # against gt.csv): left 0.12, top 0.09, right 0.14, bottom 0.02
                j = np.clip(rng.normal(0.0, (0.12, 0.09, 0.14, 0.02)), -0.3, 0.3)
                cx1 = int(np.clip(x1 - 0.1 * bw + j[0] * bw, 0, 479))
                cy1 = int(np.clip(y1 - 0.05 * bh + j[1] * bh, 0, 271))
                cx2 = int(np.clip(x2 + 0.1 * bw + j[2] * bw, cx1 + 8, 480))
                cy2 = int(np.clip(y2 + 0.05 * bh + j[3] * bh, cy1 + 16, 272))
                crop = cv2.resize(
                    frame[cy1:cy2, cx1:cx2], (width, height), interpolation=cv2.INTER_AREA
                )
                if pid <= n_train:
                    split = "bounding_box_train"
                else:
                    split = "query" if k == 0 else "bounding_box_test"
                name = f"{pid:04d}_c{ci + 1}s1_{k:06d}_00.jpg"
                cv2.imwrite(str(dirs[split] / name), crop)
    return base
