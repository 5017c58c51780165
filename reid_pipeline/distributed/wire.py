"""The wire format of a ``FinishedBatch``: one message per camera, versioned and validated.

A worker's ``FinishedBatch`` covers all of its cameras; it travels as one message per
camera (subject ``<prefix>.tracklets.<camera>``): that camera's finished tracklets and its
source's resume point. Splitting keeps the commit invariant, which is per source (every
tracklet before R travels with R), and keys the stream by camera.

Layout (little-endian)::

    b"REIDTRK\\0" | u16 version | u32 header length | header (UTF-8 JSON) | payload?

The header is a small JSON object with fixed keys (camera, source id, model version, vector
size, resume point, per tracklet its track id and box/crop counts, the payload's size and
SHA-256, and the object-store name when the payload is not inline). The payload is raw
arrays in a fixed order whose sizes all follow from the header's counts, so nothing in a
message chooses a dtype, a shape or an offset:

    frames int64[B] | timestamps float64[B] | boxes float32[B,4] | confidences float32[B] |
    crop frames int64[C] | vectors float32[C,D] | crop sizes uint32[C] | JPEG bytes

No pickle: decoding only parses JSON and reads numbers, and ``decode`` checks every count,
size, range and hash, raising ``WireError`` for anything else - the matcher refuses such a
message (dead letter) instead of failing on it. Crops travel as JPEG (the gallery stores
JPEG anyway, at ``gallery.crop_quality``), a tenth of the raw pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid_pipeline.errors import ReidError
from reid_pipeline.pipeline.engine import FinishedBatch, FinishedTracklet, SourceProgress
from reid_pipeline.types import TrackedBox, Tracklet

MAGIC = b"REIDTRK\x00"
VERSION = 1
_FIXED = struct.Struct("<HI")  # version, header length
MAX_HEADER = 4 << 20
MAX_BOXES = 5_000_000  # per message
MAX_DIM = 65_536
MAX_TEXT = 200  # camera names and model versions (the gallery's column sizes)
_INT32 = 2**31 - 1
_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_KEYS = {
    "camera",
    "source_id",
    "model_version",
    "dim",
    "resume_from",
    "done",
    "handed_at",
    "tracklets",
    "payload",
}


class WireError(ReidError):
    """A message that is not a valid tracklet batch of this format (the matcher refuses it)."""


def camera_token(camera: str) -> str:
    """A camera name as one NATS subject token: safe names as they are, any other as ``~`` and
    its UTF-8 hex (injective: a safe name never holds ``~``)."""
    if _SAFE.fullmatch(camera):
        return camera
    return "~" + camera.encode("utf-8").hex()


@dataclass(frozen=True)
class Part:
    """One camera's share of a batch, ready to send: header fields and the payload bytes."""

    camera: str
    source_id: int
    resume_from: int
    header: dict[str, Any]
    payload: bytes

    @property
    def msg_id(self) -> str:
        """The broker's de-duplication id: the same content re-sent is stored once."""
        return f"{self.source_id}.{self.resume_from}.{self.header['payload']['sha256'][:24]}"

    def pack(self, object_name: str | None = None) -> bytes:
        """The message: the payload inline, or only its object-store name."""
        header = dict(self.header, payload=dict(self.header["payload"], object=object_name))
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
        body = b"" if object_name else self.payload
        return MAGIC + _FIXED.pack(VERSION, len(head)) + head + body


def encode_batch(
    batch: FinishedBatch, *, crop_quality: int = 90, handed_at: float | None = None
) -> list[Part]:
    """``batch`` -> one ``Part`` per source of its progress (cameras without a new tracklet
    still carry their resume point)."""
    import cv2

    handed = time.time() if handed_at is None else float(handed_at)
    by_source: dict[int, list[FinishedTracklet]] = {}
    for ft in batch.tracklets:
        by_source.setdefault(ft.source_id, []).append(ft)
    progress = {sp.source_id: sp for sp in batch.progress}
    missing = sorted(set(by_source) - set(progress))
    if missing:
        raise ValueError(f"tracklets of source(s) {missing} come without a resume point")
    parts = []
    for sp in batch.progress:
        fts = by_source.get(sp.source_id, [])
        dims = {
            int(np.asarray(ft.vectors).shape[1]) for ft in fts if np.asarray(ft.vectors).ndim == 2
        }
        dim = dims.pop() if len(dims) == 1 else (0 if not dims else -1)
        if dim < 0:
            raise ValueError(f"camera {sp.camera}: vectors of several sizes in one batch")
        frames, stamps, boxes, confs = [], [], [], []
        cframes, vecs, sizes, jpegs, entries = [], [], [], [], []
        for ft in fts:
            t = ft.tracklet
            v = np.asarray(ft.vectors, np.float32)
            if v.ndim != 2 or len(v) != len(t.crop_frames) or len(t.crops) != len(t.crop_frames):
                raise ValueError(
                    f"camera {sp.camera} track {t.track_id}: {len(t.crops)} crops, "
                    f"{len(t.crop_frames)} crop frames, {len(v)} vectors"
                )
            for b in t.boxes:
                frames.append(int(b.frame_index))
                stamps.append(float(b.timestamp))
                boxes.append([float(x) for x in b.bbox])
                confs.append(float(b.confidence))
            for img, f in zip(t.crops, t.crop_frames, strict=True):
                cframes.append(int(f))
                data = b""
                if img is not None and int(getattr(img, "size", 0)) > 0:
                    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, crop_quality])
                    if not ok:
                        raise ValueError(f"camera {sp.camera}: a crop cannot be encoded as JPEG")
                    data = buf.tobytes()
                sizes.append(len(data))
                jpegs.append(data)
            vecs.append(v)
            entries.append(
                {"track_id": int(t.track_id), "boxes": len(t.boxes), "crops": len(t.crop_frames)}
            )
        all_vecs = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
        payload = b"".join(
            [
                np.asarray(frames, "<i8").tobytes(),
                np.asarray(stamps, "<f8").tobytes(),
                np.asarray(boxes, "<f4").reshape(-1, 4).tobytes(),
                np.asarray(confs, "<f4").tobytes(),
                np.asarray(cframes, "<i8").tobytes(),
                np.ascontiguousarray(all_vecs, "<f4").tobytes(),
                np.asarray(sizes, "<u4").tobytes(),
                *jpegs,
            ]
        )
        header = {
            "camera": sp.camera,
            "source_id": int(sp.source_id),
            "model_version": batch.model_version,
            "dim": dim,
            "resume_from": int(sp.resume_from),
            "done": bool(sp.done),
            "handed_at": handed,
            "tracklets": entries,
            "payload": {
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "object": None,
            },
        }
        parts.append(Part(sp.camera, int(sp.source_id), int(sp.resume_from), header, payload))
    return parts


# ------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class Envelope:
    """A validated header; the payload is inline or in the object store (``object_name``)."""

    camera: str
    source_id: int
    model_version: str
    dim: int
    resume_from: int
    done: bool
    handed_at: float
    tracklets: tuple[tuple[int, int, int], ...]  # (track id, boxes, crops)
    payload_size: int
    sha256: str
    object_name: str | None

    @property
    def boxes(self) -> int:
        return sum(n for _, n, _ in self.tracklets)

    @property
    def crops(self) -> int:
        return sum(c for _, _, c in self.tracklets)


def _int(h: dict[str, Any], key: str, lo: int, hi: int = _INT32) -> int:
    v = h.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise WireError(f"header field {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _text(h: dict[str, Any], key: str, allow_empty: bool = False) -> str:
    v = h.get(key)
    if not isinstance(v, str) or len(v) > MAX_TEXT or (not v and not allow_empty):
        raise WireError(f"header field {key!r} must be a string of 1-{MAX_TEXT} characters")
    return v


def parse(data: bytes, subject_camera: str | None = None) -> tuple[Envelope, bytes | None]:
    """Validate a message's framing and header; returns it and the inline payload (None when
    it lies in the object store). ``subject_camera``: the subject's camera token, which must
    be the header's camera."""
    if len(data) < len(MAGIC) + _FIXED.size or not data.startswith(MAGIC):
        raise WireError("not a tracklet batch (bad magic)")
    version, hlen = _FIXED.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise WireError(f"wire version {version} is not supported (this matcher reads {VERSION})")
    start = len(MAGIC) + _FIXED.size
    if hlen > MAX_HEADER or start + hlen > len(data):
        raise WireError(f"header length {hlen} exceeds the message")
    try:
        h = json.loads(data[start : start + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"header is not JSON: {e}") from None
    if not isinstance(h, dict) or set(h) != _HEADER_KEYS:
        got = sorted(h) if isinstance(h, dict) else type(h).__name__
        raise WireError(f"header must have exactly the keys {sorted(_HEADER_KEYS)}, got {got}")
    camera = _text(h, "camera")
    if subject_camera is not None and camera_token(camera) != subject_camera:
        raise WireError(f"header camera {camera!r} does not match the subject")
    model_version = _text(h, "model_version", allow_empty=True)
    source_id = _int(h, "source_id", 1)
    dim = _int(h, "dim", 0, MAX_DIM)
    resume = _int(h, "resume_from", 0)
    if not isinstance(h["done"], bool):
        raise WireError("header field 'done' must be true or false")
    handed = h["handed_at"]
    if (
        not isinstance(handed, (int, float))
        or isinstance(handed, bool)
        or not math.isfinite(handed)
    ):
        raise WireError("header field 'handed_at' must be a number")
    entries = h["tracklets"]
    if not isinstance(entries, list):
        raise WireError("header field 'tracklets' must be a list")
    tracklets = []
    seen: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"track_id", "boxes", "crops"}:
            raise WireError("each tracklet entry needs exactly track_id, boxes, crops")
        tid = _int(entry, "track_id", 0)
        nb = _int(entry, "boxes", 1, MAX_BOXES)
        nc = _int(entry, "crops", 0, nb)
        if tid in seen:
            raise WireError(f"track {tid} appears twice in one message")
        seen.add(tid)
        tracklets.append((tid, nb, nc))
    if sum(n for _, n, _ in tracklets) > MAX_BOXES:
        raise WireError(f"more than {MAX_BOXES} boxes in one message")
    if tracklets and dim < 1 and any(c for _, _, c in tracklets):
        raise WireError("crops without a vector size (dim)")
    p = h["payload"]
    if not isinstance(p, dict) or set(p) != {"size", "sha256", "object"}:
        raise WireError("header field 'payload' needs exactly size, sha256, object")
    size = _int(p, "size", 0, 2**40)
    sha = p["sha256"]
    if not isinstance(sha, str) or re.fullmatch(r"[0-9a-f]{64}", sha) is None:
        raise WireError("payload sha256 must be 64 hex digits")
    obj = p["object"]
    if obj is not None and (
        not isinstance(obj, str) or _SAFE.fullmatch(obj.replace(".", "_")) is None
    ):
        raise WireError("payload object name must be a plain name")
    env = Envelope(
        camera,
        source_id,
        model_version,
        dim,
        resume,
        h["done"],
        float(handed),
        tuple(tracklets),
        size,
        sha,
        obj,
    )
    body = data[start + hlen :]
    if obj is not None:
        if body:
            raise WireError("payload both inline and in the object store")
        return env, None
    return env, body


def decode(env: Envelope, payload: bytes) -> FinishedBatch:
    """The payload of a validated header -> this camera's ``FinishedBatch`` (one progress)."""
    import cv2

    if len(payload) != env.payload_size:
        raise WireError(f"payload is {len(payload)} bytes, the header says {env.payload_size}")
    if hashlib.sha256(payload).hexdigest() != env.sha256:
        raise WireError("payload does not match its SHA-256")
    nb, nc, d = env.boxes, env.crops, env.dim
    fixed = nb * (8 + 8 + 16 + 4) + nc * (8 + 4 * d + 4)
    if fixed > len(payload):
        raise WireError(f"payload of {len(payload)} bytes cannot hold {nb} boxes and {nc} crops")
    off = 0

    def take(dtype: str, count: int, shape: Sequence[int]) -> np.ndarray:
        nonlocal off
        a = np.frombuffer(payload, dtype, count, off).reshape(shape)
        off += a.nbytes
        return a

    frames = take("<i8", nb, (nb,))
    stamps = take("<f8", nb, (nb,))
    boxes = take("<f4", nb * 4, (nb, 4))
    confs = take("<f4", nb, (nb,))
    cframes = take("<i8", nc, (nc,))
    vectors = take("<f4", nc * d, (nc, d))
    sizes = take("<u4", nc, (nc,))
    if off + int(sizes.sum(dtype=np.int64)) != len(payload):
        raise WireError("crop sizes do not add up to the payload")
    if nb and (frames.min() < 0 or frames.max() > _INT32):
        raise WireError("frame numbers out of range")
    for name, a in (("timestamps", stamps), ("boxes", boxes), ("confidences", confs)):
        if not np.isfinite(a).all():
            raise WireError(f"{name} must be finite numbers")
    if not np.isfinite(vectors).all():
        raise WireError("vectors must be finite numbers")
    out: list[FinishedTracklet] = []
    bo = co = 0
    jo = off
    for tid, n_boxes, n_crops in env.tracklets:
        fr = frames[bo : bo + n_boxes]
        if n_boxes > 1 and (np.diff(fr) <= 0).any():
            raise WireError(f"track {tid}: frame numbers must increase")
        frame_set = {int(f) for f in fr}
        tboxes = [
            TrackedBox(
                env.camera,
                int(fr[i]),
                float(stamps[bo + i]),
                (
                    float(boxes[bo + i, 0]),
                    float(boxes[bo + i, 1]),
                    float(boxes[bo + i, 2]),
                    float(boxes[bo + i, 3]),
                ),
                float(confs[bo + i]),
                tid,
            )
            for i in range(n_boxes)
        ]
        crops, crop_frames = [], []
        for k in range(co, co + n_crops):
            f = int(cframes[k])
            if f not in frame_set:
                raise WireError(f"track {tid}: crop of frame {f}, which has no box")
            size = int(sizes[k])
            img = None
            if size:
                buf = np.frombuffer(payload, np.uint8, size, jo)
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
                if img is None:
                    raise WireError(f"track {tid}: crop of frame {f} is not a JPEG image")
            jo += size
            crops.append(img if img is not None else np.zeros((0, 0, 3), np.uint8))
            crop_frames.append(f)
        vec = np.array(vectors[co : co + n_crops], np.float32).reshape(n_crops, d)
        bo += n_boxes
        co += n_crops
        t = Tracklet(env.camera, tid, tboxes, crops, crop_frames, finished=True)
        out.append(FinishedTracklet(env.camera, env.source_id, t, vec))
    progress = SourceProgress(env.camera, env.source_id, env.resume_from, env.done)
    return FinishedBatch(tuple(out), (progress,), env.model_version)


# ------------------------------------------------------------------ begin (request/reply)


@dataclass(frozen=True)
class BeginRequest:
    """A worker's ``begin``: one source it is about to read (the ``SourceInfo`` fields)."""

    camera: str
    uri: str
    fingerprint: str
    fps: float
    frame_count: int | None
    model_version: str

    def to_json(self) -> bytes:
        d = {
            "v": VERSION,
            "camera": self.camera,
            "uri": self.uri,
            "fingerprint": self.fingerprint,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "model_version": self.model_version,
        }
        return json.dumps(d, allow_nan=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> BeginRequest:
        try:
            d = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise WireError(f"begin request is not JSON: {e}") from None
        keys = {"v", "camera", "uri", "fingerprint", "fps", "frame_count", "model_version"}
        if not isinstance(d, dict) or set(d) != keys:
            raise WireError(f"begin request needs exactly the keys {sorted(keys)}")
        if d["v"] != VERSION:
            raise WireError(f"begin request of protocol {d['v']!r}; this matcher speaks {VERSION}")
        fc = d["frame_count"]
        if fc is not None:
            _int(d, "frame_count", 0)
        fps = d["fps"]
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps):
            raise WireError("begin request field 'fps' must be a number")
        uri = d["uri"]
        if not isinstance(uri, str) or len(uri) > 2000:
            raise WireError("begin request field 'uri' must be a string of at most 2000 characters")
        return cls(
            _text(d, "camera"),
            uri,
            _text(d, "fingerprint"),
            float(fps),
            fc,
            _text(d, "model_version", allow_empty=True),
        )


__all__ = [
    "BeginRequest",
    "MAGIC",
    "VERSION",
    "Envelope",
    "Part",
    "WireError",
    "camera_token",
    "decode",
    "encode_batch",
    "parse",
]
