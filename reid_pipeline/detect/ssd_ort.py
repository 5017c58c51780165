"""The SSD person detector on ONNX Runtime (``detector.ssd_runtime``): the same TF graph,
translated to PyTorch once, exported to ONNX, cached, and run by onnxruntime.

Why: on a CPU the OpenCV DNN path spends ~100 ms per 300x300 view, over half of it in the
six ``BoxPredictor_*/ClassPredictor`` 3x3 convolutions, which score all 91 COCO classes of
every anchor; the detector needs only person (class 1). The translation keeps, of each class
convolution, only the background and person channels of each anchor (the output channels are
anchor-major, ``num_classes`` per anchor, as OpenCV flattens them), and onnxruntime runs the
MobileNetV2 feature extractor ~1.7x faster than OpenCV DNN. What it measured:
docs/benchmarks.md, "Detectors (issue 13)", "ONNX Runtime".

What is translated, all from the OpenCV text graph (``.pbtxt``, parsed here; no TensorFlow)
and the frozen graph's constants (``.pb``, read here with a protobuf wire-format reader; no
TensorFlow either): Placeholder, Mul/Sub/Add with constants (the preprocessing
``x * 2/255 - 1``), Conv2D / DepthwiseConv2dNative (TF ``SAME`` padding: asymmetric, the
extra row/column at the bottom/right), FusedBatchNorm and BiasAdd (folded into the
convolution before them), Relu6, Add, Identity, Flatten (in NHWC order, like OpenCV), ConcatV2
and Sigmoid. The graph takes OpenCV's blob (float32 NCHW RGB 0..255, ``blobFromImages``, so
both runtimes see the same pixels) and gives ``loc`` (N, P, 4: the box encodings) and ``conf``
(N, P, 2: sigmoid background and person scores) for the P anchors. ``PriorBox`` and
``DetectionOutput`` are done here in numpy, from the text graph's parameters, as OpenCV does
them: priors at each feature cell's centre ``(i + 0.5) * step`` (``prior_boxes``), CENTER_SIZE
decoding with the variances (``decode_boxes``), scores above the graph's confidence threshold,
its ``top_k`` best, greedy NMS at its ``nms_threshold``, ``keep_top_k``; the rows are
DetectionOutput's ``[view, class, score, x1, y1, x2, y2]``, so ``ssd.parse_output`` and the
tile merge are shared. One difference is by design: OpenCV's ``keep_top_k`` (100) counts the
boxes of all 90 classes, this one counts persons only, so where more than 100 boxes of other
classes outscore a person OpenCV drops that person and this keeps it.

Cache: ``cache_dir()`` of the ONNX embedder (``$REID_CACHE_DIR/onnx``, else
``~/.cache/reid_pipeline/onnx``), file ``ssd-<key>.onnx``, the key a hash of the two graph
files, the input size and ``TRANSLATION``. A cached file that does not load, or whose
metadata is not this key's, is made again (a warning says why). Every export is checked
against OpenCV DNN before it is used or written (``verify_against_opencv``: rendered people
on camera backgrounds, whole frames and 2x1 tiles): per anchor scores and box encodings, and
the person boxes at score >= ``VERIFY_FLOOR``: each one matched by one of the other runtime's
with IoU >= ``IOU_MIN`` and ``|score difference| <= SCORE_TOL``. A failure is one
``CheckpointError`` line; ``auto`` then runs OpenCV DNN and says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_pipeline.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "opencv", "onnxruntime")
TRANSLATION = 1  # bump when the translation changes: cached exports are then made again
FORMAT = "reid_pipeline.ssd_onnx/1"
OPSET = 17
INPUT_NAME = "image"
LOC_NAME = "loc"
CONF_NAME = "conf"
KEEP_CLASSES = (0, 1)  # background, person (COCO label map: 1 = person)
PERSON_COLUMN = 1  # of ``conf``
PERSON_LABEL = 1  # the class column of the rows (``ssd.PERSON_CLASS``)
# the export check (``verify_against_opencv``)
VERIFY_FLOOR = 0.1
IOU_MIN = 0.98
SCORE_TOL = 0.01

DT_FLOAT, DT_INT32 = 1, 3


# ---------------------------------------------------------------------- the text graph


_TOKEN = re.compile(
    r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#[^\n]*|[{}:\[\],;<>]|[^\s{}:\[\],;<>\"'#]+"
)
Message = dict[str, list[Any]]


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _scalar(tok: str) -> Any:
    if tok[0] in "\"'":
        return _unquote(tok)
    if tok in ("true", "True"):
        return True
    if tok in ("false", "False"):
        return False
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok  # an enum value (DT_FLOAT)


def parse_text_format(text: str) -> Message:
    """Protocol-buffer text format -> ``{field: [values]}`` (nested messages as dicts).
    Enough of the format for OpenCV's SSD text graphs; ``ValueError`` on anything else."""
    toks = [t for t in _TOKEN.findall(text) if not t.startswith("#")]
    pos = 0

    def message(closing: str | None) -> Message:
        nonlocal pos
        out: Message = {}
        while pos < len(toks):
            t = toks[pos]
            if t in ("}", ">"):
                if closing is None:
                    raise ValueError(f"unbalanced {t!r}")
                pos += 1
                return out
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", t):
                raise ValueError(f"expected a field name, got {t!r}")
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise ValueError(f"field {t!r} has no value")
            v = toks[pos]
            if v in ("{", "<"):
                pos += 1
                out.setdefault(t, []).append(message(v))
            elif v == "[":
                pos += 1
                while pos < len(toks) and toks[pos] != "]":
                    if toks[pos] != ",":
                        out.setdefault(t, []).append(_scalar(toks[pos]))
                    pos += 1
                pos += 1
            elif v in ("}", ">", ":", ",", ";", "]"):
                raise ValueError(f"field {t!r} has no value")
            else:
                pos += 1
                out.setdefault(t, []).append(_scalar(v))
            if pos < len(toks) and toks[pos] in (",", ";"):
                pos += 1
        if closing is not None:
            raise ValueError("unexpected end of text (a '}' is missing)")
        return out

    return message(None)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Message] = field(default_factory=dict)

    def attr(self, key: str, kind: str, default: Any = None) -> Any:
        """One value of attribute ``key`` (``kind``: ``s``, ``i``, ``f``, ``b``)."""
        v = self.attrs.get(key)
        return v[kind][0] if v is not None and kind in v else default

    def ints(self, key: str) -> list[int]:
        v = self.attrs.get(key)
        if v is None or "list" not in v:
            return []
        return [int(x) for x in v["list"][0].get("i", [])]

    def floats(self, key: str) -> list[float]:
        """A float tensor attribute (PriorBox ``width``, ``variance``...)."""
        v = self.attrs.get(key)
        if v is None:
            return []
        if "tensor" in v:
            return [float(x) for x in v["tensor"][0].get("float_val", [])]
        if "list" in v:
            return [float(x) for x in v["list"][0].get("f", [])]
        return [float(v["f"][0])] if "f" in v else []


def read_text_graph(pbtxt: Path) -> list[Node]:
    """The nodes of an OpenCV text graph; ``CheckpointError`` naming the file if unreadable."""
    try:
        msg = parse_text_format(pbtxt.read_text(encoding="utf-8", errors="replace"))
        nodes = []
        for n in msg.get("node", []):
            attrs = {str(a["key"][0]): a["value"][0] for a in n.get("attr", [])}
            nodes.append(
                Node(
                    str(n["name"][0]), str(n["op"][0]), [str(i) for i in n.get("input", [])], attrs
                )
            )
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise CheckpointError(
            f"SSD text graph '{pbtxt}' cannot be read as a text GraphDef: {e}"
        ) from None
    if not nodes:
        raise CheckpointError(f"SSD text graph '{pbtxt}' has no nodes")
    return nodes


# ---------------------------------------------------------------------- the frozen graph


def _varint(b: memoryview, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        if c < 0x80:
            return r, i
        s += 7


def _fields(b: memoryview) -> Any:
    """(field number, wire type, value) of one protobuf message (value: int or bytes view)."""
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        v: Any
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            ln, i = _varint(b, i)
            if i + ln > n:
                raise ValueError("truncated field")
            v = b[i : i + ln]
            i += ln
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, v


def _packed(wt: int, v: Any, dtype: str) -> list[Any]:
    """A repeated float (``f4``, packed or not) or int (varint) field's values."""
    if dtype == "f4":
        return np.frombuffer(bytes(v), "<f4").tolist()
    if wt == 0:
        return [v]
    out, j, vb = [], 0, memoryview(bytes(v))
    while j < len(vb):
        x, j = _varint(vb, j)
        out.append(x - (1 << 64) if x >= 1 << 63 else x)
    return out


def _tensor(b: memoryview, name: str) -> np.ndarray:
    """A ``TensorProto`` (float32 or int32) -> numpy."""
    dtype, content = 0, None
    shape: list[int] = []
    vals: list[Any] = []
    for f, wt, v in _fields(b):
        if f == 1:
            dtype = v
        elif f == 2:
            for g, _, d in _fields(v):
                if g == 2:
                    shape.extend(int(x) for h, _, x in _fields(d) if h == 1)
        elif f == 4:
            content = bytes(v)
        elif f == 5:
            vals.extend(_packed(wt, v, "f4"))
        elif f == 7:
            vals.extend(_packed(wt, v, "i"))
    np_dtype = {DT_FLOAT: np.float32, DT_INT32: np.int32}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"constant {name!r} has dtype {dtype} (only float32/int32 are read)")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    else:
        arr = np.asarray(vals, np_dtype)
        if arr.size == 1 and count > 1:
            arr = np.full(count, arr[0], np_dtype)  # TF repeats the last value
    if arr.size != count:
        raise ValueError(f"constant {name!r} has {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def read_constants(pb: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """The ``Const`` nodes named ``wanted`` of a frozen GraphDef (following ``Identity``
    nodes); ``CheckpointError`` naming the file if it is not one or lacks a name."""
    try:
        data = memoryview(pb.read_bytes())
        consts: dict[str, memoryview] = {}
        alias: dict[str, str] = {}
        for f, _, node in _fields(data):
            if f != 1:
                continue
            name = op = ""
            inputs: list[str] = []
            value = None
            for g, _, v in _fields(node):
                if g == 1:
                    name = bytes(v).decode()
                elif g == 2:
                    op = bytes(v).decode()
                elif g == 3:
                    inputs.append(bytes(v).decode())
                elif g == 5 and op == "Const":  # attr map entry: key 1, value 2
                    key, val = "", None
                    for h, _, x in _fields(v):
                        if h == 1:
                            key = bytes(x).decode()
                        elif h == 2:
                            val = x
                    if key == "value" and val is not None:
                        value = next((x for h, _, x in _fields(val) if h == 8), None)
            if op == "Const" and value is not None:
                consts[name] = value
            elif op == "Identity" and inputs:
                alias[name] = inputs[0]
        out = {}
        for w in wanted:
            src, hops = w, 0
            while src not in consts and src in alias and hops < 16:
                src, hops = alias[src], hops + 1
            if src not in consts:
                raise ValueError(f"it has no constant {w!r} (which the text graph uses)")
            out[w] = _tensor(consts[src], w)
    except OSError as e:
        raise CheckpointError(f"SSD graph file '{pb}' cannot be read: {e.strerror or e}") from None
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"SSD graph file '{pb}' is not a frozen TensorFlow graph that fits its text graph: {e}"
        ) from None
    return out


# ---------------------------------------------------------------------- translation


@dataclass
class HeadParams:
    """What ``DetectionOutput`` and the ``PriorBox`` nodes need, from the text graph."""

    priors: list[dict[str, Any]]  # per PriorBox node: widths, heights, variance, clip, offset...
    num_classes: int
    conf_threshold: float
    nms_threshold: float
    top_k: int
    keep_top_k: int
    loc_transposed: bool
    clip: bool
    variance_in_target: bool


@dataclass
class Plan:
    """The translated graph, torch-free: steps over named tensors, weights in numpy."""

    steps: list[tuple[str, str, list[str], Any]]  # (kind, output, inputs, argument)
    convs: list[dict[str, Any]]  # weight (O, I/g, kh, kw), bias, stride, dilation, groups, pads
    input_name: str
    loc: str
    conf: str
    num_priors: int
    feature_maps: list[tuple[int, int]]  # (H, W) of each PriorBox's feature map, in order
    head: HeadParams


def _bad(pbtxt: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"SSD text graph '{pbtxt}' cannot run on onnxruntime: {why} (set "
        "detector.ssd_runtime=opencv)"
    )


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int, int]:
    """TF SAME: (output size, pad before, pad after): the odd pixel goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return out, total // 2, total - total // 2


def _needed(by_name: dict[str, Node], outputs: Sequence[str]) -> tuple[list[Node], set[str]]:
    """The nodes that ``outputs`` depend on, in dependency order, and the names of the inputs
    that no node of the text graph makes (the frozen graph's constants)."""
    order: list[Node] = []
    seen: set[str] = set()
    external: set[str] = set()
    stack = [(name, False) for name in reversed(outputs)]
    while stack:
        name, done = stack.pop()
        n = by_name.get(name)
        if n is None:
            external.add(name)
        elif done:
            if n.name not in seen:
                seen.add(n.name)
                order.append(n)
        elif n.name not in seen:
            stack.append((name, True))
            stack.extend((i, False) for i in reversed(n.inputs))
    return order, external


class _Translator:
    """Walks the needed nodes once, in order, making a ``Plan``'s steps (see ``translate``)."""

    PASS_THROUGH = ("Sigmoid", "ConcatV2", "Flatten", "BiasAdd", "Identity")

    def __init__(self, nodes: list[Node], consts_of: Any, pbtxt: Path, size: int) -> None:
        self.pbtxt, self.size = pbtxt, size
        self.by_name = {n.name: n for n in nodes}
        self.head = head_of(nodes, pbtxt)
        self.do = next(n for n in nodes if n.op == "DetectionOutput")
        self.loc_src, self.conf_src = self.do.inputs[0], self.do.inputs[1]
        self.order, external = _needed(self.by_name, [self.loc_src, self.conf_src])
        self.consts: dict[str, np.ndarray] = dict(consts_of(external)) if external else {}
        for n in self.order:  # constants written into the text graph itself (concat axes)
            if n.op == "Const":
                t = n.attrs.get("value", {}).get("tensor", [{}])[0]
                self.consts[n.name] = np.asarray(t.get("int_val", []) or t.get("float_val", []))
        self.consumers: dict[str, int] = {}
        for n in self.order:
            for i in n.inputs:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        self.steps: list[tuple[str, str, list[str], Any]] = []
        self.convs: list[dict[str, Any]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # per view: (C, H, W) or (L,)
        self.conv_of: dict[str, int] = {}  # tensor -> index of the conv that makes it
        self.alias: dict[str, str] = {}  # folded or Identity node -> the tensor it is
        self.input_name = ""
        conf = self.by_name.get(self.conf_src)
        if conf is None or conf.op != "Sigmoid":
            raise self.bad("its class scores are not a Sigmoid (softmax graphs are not translated)")
        self.class_convs = {n.name for n in self.conv_roots(self.conf_src, "class scores")}
        self.conv_roots(self.loc_src, "box encodings")  # the same path: convs, flatten, concat

    def bad(self, why: str) -> CheckpointError:
        return _bad(self.pbtxt, why)

    def conv_roots(self, start: str, what: str) -> list[Node]:
        """The convolutions whose outputs reach ``start`` through pass-through nodes only."""
        roots, todo, walked = [], [start], set()
        while todo:
            n = self.by_name.get(todo.pop())
            if n is None or n.name in walked or n.op == "Const":
                continue
            walked.add(n.name)
            if n.op == "Conv2D":
                roots.append(n)
            elif n.op in self.PASS_THROUGH:
                todo.extend(n.inputs)
            else:
                raise self.bad(f"the {what} pass through {n.op} node {n.name!r}")
        return roots

    def src(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            raise self.bad(f"constant {name!r} is missing")
        return self.consts[name]

    def is_const(self, name: str) -> bool:
        n = self.by_name.get(name)
        return n is None or n.op == "Const"

    def shape(self, n: Node, name: str, rank: int | None = None) -> tuple[int, ...]:
        s = self.shapes.get(self.src(name))
        if s is None or (rank is not None and len(s) != rank):
            raise self.bad(f"{n.op} node {n.name!r} does not take a feature map")
        return s

    def run(self) -> Plan:
        for n in self.order:
            if n.op == "Const":
                continue
            handler = getattr(self, f"op_{n.op}", None)
            if handler is None:
                raise self.bad(f"node {n.name!r} has op {n.op}, which is not translated")
            handler(n)
        if not self.input_name:
            raise self.bad("it has no Placeholder input")
        fmaps = []
        for p in prior_nodes(list(self.by_name.values()), self.pbtxt):
            feat = self.shapes.get(self.src(p.inputs[0]))
            if feat is None or len(feat) != 3:
                raise self.bad(f"PriorBox {p.name!r} does not sit on a feature map of the outputs")
            fmaps.append((feat[1], feat[2]))
        n_priors = sum(h * w * len(p["widths"]) for (h, w), p in zip(fmaps, self.head.priors))
        loc, conf = self.src(self.loc_src), self.src(self.conf_src)
        if self.shapes[loc] != (4 * n_priors,) or self.shapes[conf] != (
            len(KEEP_CLASSES) * n_priors,
        ):
            raise self.bad(
                f"its outputs ({self.shapes[loc]}, {self.shapes[conf]}) do not fit {n_priors} "
                f"priors x 4 box values / x {len(KEEP_CLASSES)} kept classes"
            )
        return Plan(self.steps, self.convs, self.input_name, loc, conf, n_priors, fmaps, self.head)

    def add(self, kind: str, n: Node, ins: list[str], arg: Any, shape: tuple[int, ...]) -> None:
        self.steps.append((kind, n.name, ins, arg))
        self.shapes[n.name] = shape

    # ------------------------------------------------------------------ ops

    def op_Placeholder(self, n: Node) -> None:
        if self.input_name:
            raise self.bad("it has more than one input")
        self.input_name = n.name
        self.add("input", n, [], None, (3, self.size, self.size))

    def op_Conv2D(self, n: Node) -> None:
        c, h, w = self.shape(n, n.inputs[0], 3)
        if n.attr("data_format", "s", "NHWC") != "NHWC":
            raise self.bad(f"{n.op} node {n.name!r} is not NHWC")
        k = self.const(n.inputs[1]).astype(np.float64)
        if k.ndim != 4 or k.shape[2] != c:
            raise self.bad(f"{n.op} node {n.name!r}: kernel {k.shape} for {c} input channels")
        kh, kw, cin, cout = k.shape
        if n.op == "Conv2D":  # (kh, kw, in, out) -> (out, in, kh, kw)
            weight, groups = k.transpose(3, 2, 0, 1), 1
        else:  # depthwise (kh, kw, in, multiplier) -> (in * multiplier, 1, kh, kw), in groups
            weight, groups = k.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw), cin
        strides = n.ints("strides") or [1, 1, 1, 1]
        dil = n.ints("dilations") or [1, 1, 1, 1]
        sh, sw, dh, dw = strides[1], strides[2], dil[1], dil[2]
        pad = str(n.attr("padding", "s", "SAME"))
        if pad == "SAME":
            oh, pt, pb = _same_pads(h, kh, sh, dh)
            ow, pl, pr = _same_pads(w, kw, sw, dw)
        elif pad == "VALID":
            oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
            pt = pb = pl = pr = 0
        else:
            raise self.bad(f"{n.op} node {n.name!r} has padding {pad!r}")
        if oh < 1 or ow < 1:
            raise self.bad(f"input {self.size}x{self.size} is too small for node {n.name!r}")
        head = n.name in self.class_convs
        if head:  # keep background and person of each anchor (anchor-major channels)
            nc = self.head.num_classes
            if weight.shape[0] % nc:
                raise self.bad(f"class conv {n.name!r} has {weight.shape[0]} outputs, not k x {nc}")
            weight = weight[_kept_channels(weight.shape[0], nc)]
        self.convs.append(
            {
                "weight": weight,
                "bias": np.zeros(weight.shape[0]),
                "stride": (sh, sw),
                "dilation": (dh, dw),
                "groups": groups,
                "pads": (pt, pb, pl, pr),  # top, bottom, left, right
                "class_head": head,
            }
        )
        self.conv_of[n.name] = len(self.convs) - 1
        self.add("conv", n, [self.src(n.inputs[0])], len(self.convs) - 1, (weight.shape[0], oh, ow))

    op_DepthwiseConv2dNative = op_Conv2D

    def fold(self, n: Node, x: str, scale: np.ndarray | None, shift: np.ndarray) -> None:
        """``x * scale + shift`` per channel: folded into the conv making ``x`` when this node
        is that conv's only consumer, else a step of its own."""
        xs = self.src(x)
        c = self.shape(n, x)[0]
        if shift.size not in (1, c) or (scale is not None and scale.size not in (1, c)):
            raise self.bad(f"{n.op} node {n.name!r} has parameters of the wrong size")
        k = self.conv_of.get(xs)
        if k is not None and self.consumers.get(x, 0) == 1:
            cv = self.convs[k]
            w, b = cv["weight"], cv["bias"]
            if scale is not None:
                s = np.broadcast_to(scale.astype(np.float64), (w.shape[0],))
                w, b = w * s[:, None, None, None], b * s
            cv["weight"], cv["bias"] = w, b + np.broadcast_to(shift.astype(np.float64), b.shape)
            self.alias[n.name] = xs
            return
        sc = np.broadcast_to(np.ones(1) if scale is None else scale, (c,)).astype(np.float32)
        sh = np.broadcast_to(shift, (c,)).astype(np.float32)
        self.add("affine", n, [xs], (sc, sh), self.shapes[xs])

    def op_BiasAdd(self, n: Node) -> None:
        b = self.const(n.inputs[1]).astype(np.float64).reshape(-1)
        k = self.conv_of.get(self.src(n.inputs[0]))
        if k is not None and self.convs[k]["class_head"] and b.size % self.head.num_classes == 0:
            b = b[_kept_channels(b.size, self.head.num_classes)]
        self.fold(n, n.inputs[0], None, b)

    def op_FusedBatchNorm(self, n: Node) -> None:
        if bool(n.attr("is_training", "b", False)) or len(n.inputs) < 5:
            raise self.bad(f"FusedBatchNorm node {n.name!r} is not an inference batch norm")
        gamma, beta, mean, var = (
            self.const(i).astype(np.float64).reshape(-1) for i in n.inputs[1:5]
        )
        scale = gamma / np.sqrt(var + float(n.attr("epsilon", "f", 1e-3)))
        self.fold(n, n.inputs[0], scale, beta - mean * scale)

    def op_Mul(self, n: Node) -> None:
        a, b = n.inputs[:2]
        ca, cb = self.is_const(a), self.is_const(b)
        if ca and cb:
            raise self.bad(f"{n.op} node {n.name!r} has only constant inputs")
        if not ca and not cb:  # a residual connection
            sa, sb = self.shape(n, a), self.shape(n, b)
            if n.op == "Mul" or sa != sb:
                raise self.bad(f"{n.op} node {n.name!r} of two tensors {sa}, {sb}")
            kind = "sub" if n.op == "Sub" else "add"
            self.add(kind, n, [self.src(a), self.src(b)], None, sa)
            return
        t, cname = (b, a) if ca else (a, b)
        cval = self.const(cname).astype(np.float32).reshape(-1)
        shape = self.shape(n, t)
        if cval.size not in (1, shape[0]):
            raise self.bad(f"{n.op} node {n.name!r}: its constant has {cval.size} values")
        kind = {"Mul": "mul", "Sub": "rsubc" if ca else "subc"}.get(n.op, "addc")
        self.add(kind, n, [self.src(t)], cval, shape)

    op_Sub = op_Add = op_AddV2 = op_Mul

    def op_Relu6(self, n: Node) -> None:
        self.add(n.op.lower(), n, [self.src(n.inputs[0])], None, self.shape(n, n.inputs[0]))

    op_Relu = op_Sigmoid = op_Relu6

    def op_Identity(self, n: Node) -> None:
        self.alias[n.name] = self.src(n.inputs[0])

    def op_Flatten(self, n: Node) -> None:
        shape = self.shape(n, n.inputs[0])
        self.add("flatten", n, [self.src(n.inputs[0])], None, (int(np.prod(shape)),))

    def op_ConcatV2(self, n: Node) -> None:
        parts = [self.src(i) for i in n.inputs[:-1]]
        shapes = [self.shape(n, p) for p in parts]
        axis = int(np.asarray(self.const(n.inputs[-1])).reshape(-1)[0])
        ranks = {len(s) for s in shapes}
        if ranks == {1} and axis in (-1, 1):
            self.add("concat", n, parts, 1, (sum(s[0] for s in shapes),))
        elif ranks == {3} and axis in (-1, 3) and len({s[1:] for s in shapes}) == 1:
            # NHWC channels: NCHW dim 1
            self.add("concat", n, parts, 1, (sum(s[0] for s in shapes), *shapes[0][1:]))
        else:
            raise self.bad(f"ConcatV2 node {n.name!r} joins on axis {axis}")


def _kept_channels(n_out: int, n_classes: int) -> list[int]:
    """Of a class conv's anchor-major outputs (``n_classes`` per anchor), the kept classes'."""
    return [a * n_classes + c for a in range(n_out // n_classes) for c in KEEP_CLASSES]


def translate(nodes: list[Node], consts_of: Any, pbtxt: Path, size: int) -> Plan:
    """Translate ``nodes`` (an OpenCV SSD text graph) for a ``size`` x ``size`` input;
    ``consts_of(names)`` gives the frozen graph's constants by name. A node or parameter
    this does not translate is a ``CheckpointError`` naming the text graph and the node."""
    dos = [n for n in nodes if n.op == "DetectionOutput"]
    if len(dos) != 1 or len(dos[0].inputs) != 3:
        raise _bad(pbtxt, "it needs one DetectionOutput node taking (locations, scores, priors)")
    return _Translator(nodes, consts_of, pbtxt, size).run()


def prior_nodes(nodes: list[Node], pbtxt: Path) -> list[Node]:
    """The PriorBox nodes whose concatenation is DetectionOutput's third input, in order."""
    by_name = {n.name: n for n in nodes}
    do = next((n for n in nodes if n.op == "DetectionOutput"), None)
    if do is None or len(do.inputs) != 3:
        raise _bad(pbtxt, "it has no DetectionOutput node taking (locations, scores, priors)")
    pnode = by_name.get(do.inputs[2])
    found: list[Node | None] = [pnode]
    if pnode is not None and pnode.op == "ConcatV2":
        found = [by_name.get(i) for i in pnode.inputs[:-1]]
    out = [p for p in found if p is not None and p.op == "PriorBox"]
    if not out or len(out) != len(found):
        raise _bad(pbtxt, "its DetectionOutput priors are not PriorBox nodes")
    return out


def head_of(nodes: list[Node], pbtxt: Path) -> HeadParams:
    """The PriorBox and DetectionOutput parameters of a text graph (no constants needed)."""
    pnodes = prior_nodes(nodes, pbtxt)  # checks that there is a DetectionOutput
    do = next(n for n in nodes if n.op == "DetectionOutput")
    known = {"width", "height", "variance", "clip", "flip", "offset", "step"}
    priors = []
    for p in pnodes:
        extra = set(p.attrs) - known
        if extra:
            raise _bad(pbtxt, f"PriorBox {p.name!r} has parameters {sorted(extra)}")
        wl, hl, var = p.floats("width"), p.floats("height"), p.floats("variance")
        if not wl or len(wl) != len(hl) or len(var) not in (1, 4):
            raise _bad(pbtxt, f"PriorBox {p.name!r} needs equal width/height lists and 4 variances")
        priors.append(
            {
                "widths": wl,
                "heights": hl,
                "variance": var * 4 if len(var) == 1 else var,
                "clip": bool(p.attr("clip", "b", False)),
                "offset": float(p.attr("offset", "f", 0.5)),
                "step": float(p.attr("step", "f", 0.0) or 0.0),
            }
        )
    known_do = {
        "background_label_id",
        "code_type",
        "confidence_threshold",
        "keep_top_k",
        "nms_threshold",
        "num_classes",
        "share_location",
        "top_k",
        "clip",
        "normalized",
        "variance_encoded_in_target",
    }
    extra = set(do.attrs) - known_do
    if extra:
        raise _bad(pbtxt, f"its DetectionOutput has parameters {sorted(extra)}")
    code = str(do.attr("code_type", "s", "CENTER_SIZE")).upper()
    if not code.endswith("CENTER_SIZE"):
        raise _bad(pbtxt, f"its DetectionOutput code_type is {code}")
    if not bool(do.attr("share_location", "b", True)):
        raise _bad(pbtxt, "its DetectionOutput does not share locations across classes")
    if int(do.attr("background_label_id", "i", 0)) != 0:
        raise _bad(pbtxt, "its background is not class 0")
    if not bool(do.attr("normalized", "b", True)):
        raise _bad(pbtxt, "its DetectionOutput boxes are not normalised")
    n_classes = int(do.attr("num_classes", "i", 0))
    if n_classes <= max(KEEP_CLASSES):
        raise _bad(pbtxt, f"its DetectionOutput has {n_classes} classes, so no person class")
    return HeadParams(
        priors=priors,
        num_classes=n_classes,
        conf_threshold=float(do.attr("confidence_threshold", "f", 0.0)),
        nms_threshold=float(do.attr("nms_threshold", "f", 0.45)),
        top_k=int(do.attr("top_k", "i", -1)),
        keep_top_k=int(do.attr("keep_top_k", "i", -1)),
        # OpenCV's TF importer passes this flag of the box-encoding convs to DetectionOutput
        loc_transposed=any(
            bool(n.attr("loc_pred_transposed", "b", False)) for n in nodes if n.op == "Conv2D"
        ),
        clip=bool(do.attr("clip", "b", False)),
        variance_in_target=bool(do.attr("variance_encoded_in_target", "b", False)),
    )


# ---------------------------------------------------------------------- priors and decoding


def prior_boxes(
    head: HeadParams, feature_maps: Sequence[Sequence[int]], width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 4) prior boxes [x1, y1, x2, y2] (0..1 of the input) and (P, 4) variances, in
    OpenCV's PriorBox order (feature map, row, column, box) and float32 arithmetic."""
    boxes, variances = [], []
    f32 = np.float32
    for p, (fh, fw) in zip(head.priors, feature_maps):
        step_x = f32(p["step"]) if p["step"] else f32(width) / f32(fw)
        step_y = f32(p["step"]) if p["step"] else f32(height) / f32(fh)
        off = f32(p["offset"])
        cx = (np.arange(fw, dtype=f32) + off) * step_x  # (W,)
        cy = (np.arange(fh, dtype=f32) + off) * step_y  # (H,)
        bw = np.asarray(p["widths"], f32) * f32(0.5)  # (A,)
        bh = np.asarray(p["heights"], f32) * f32(0.5)
        gx = np.broadcast_to(cx[None, :, None], (fh, fw, len(bw)))
        gy = np.broadcast_to(cy[:, None, None], (fh, fw, len(bw)))
        b = np.stack(
            [
                (gx - bw) / f32(width),
                (gy - bh[None, None, :]) / f32(height),
                (gx + bw) / f32(width),
                (gy + bh[None, None, :]) / f32(height),
            ],
            axis=-1,
        ).reshape(-1, 4)
        if p["clip"]:
            b = b.clip(0, 1)
        boxes.append(b.astype(f32))
        variances.append(np.broadcast_to(np.asarray(p["variance"], f32), b.shape))
    return np.concatenate(boxes), np.concatenate(variances).astype(f32)


def decode_boxes(
    loc: np.ndarray, priors: np.ndarray, variances: np.ndarray, head: HeadParams
) -> np.ndarray:
    """CENTER_SIZE decoding of box encodings ``loc`` (..., P, 4) at the priors, as OpenCV's
    DetectionOutput does (``loc_pred_transposed``: the encodings are [dy, dx, dh, dw])."""
    f32 = np.float32
    loc = np.asarray(loc, f32)
    if head.loc_transposed:
        ex, ey, ew, eh = loc[..., 1], loc[..., 0], loc[..., 3], loc[..., 2]
    else:
        ex, ey, ew, eh = loc[..., 0], loc[..., 1], loc[..., 2], loc[..., 3]
    pw = priors[:, 2] - priors[:, 0]
    ph = priors[:, 3] - priors[:, 1]
    pcx = (priors[:, 0] + priors[:, 2]) * f32(0.5)
    pcy = (priors[:, 1] + priors[:, 3]) * f32(0.5)
    if head.variance_in_target:
        cx, cy = ex * pw + pcx, ey * ph + pcy
        w, h = np.exp(ew) * pw, np.exp(eh) * ph
    else:
        cx = variances[:, 0] * ex * pw + pcx
        cy = variances[:, 1] * ey * ph + pcy
        w = np.exp(variances[:, 2] * ew) * pw
        h = np.exp(variances[:, 3] * eh) * ph
    out = np.stack([cx - w * f32(0.5), cy - h * f32(0.5), cx + w * f32(0.5), cy + h * f32(0.5)], -1)
    if head.clip:
        out = out.clip(0, 1)
    return out.astype(f32)


def _iou_all(b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(b[:, None, 0], b[None, :, 0])
    y1 = np.maximum(b[:, None, 1], b[None, :, 1])
    x2 = np.minimum(b[:, None, 2], b[None, :, 2])
    y2 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def detection_rows(
    loc: np.ndarray,
    scores: np.ndarray,
    priors: np.ndarray,
    variances: np.ndarray,
    head: HeadParams,
    label: int = 1,
    floor: float | None = None,
) -> np.ndarray:
    """DetectionOutput of one class: ``loc`` (N, P, 4), ``scores`` (N, P) -> rows
    ``[view, label, score, x1, y1, x2, y2]`` float32: per view, scores above the graph's
    threshold (and >= ``floor``), the ``top_k`` best, greedy NMS at ``nms_threshold``
    (a box is dropped when its IoU with a kept better one is above it), ``keep_top_k``."""
    rows = []
    thr = head.conf_threshold
    for v in range(scores.shape[0]):
        s = scores[v]
        ok = s > thr
        if floor is not None:
            ok &= s >= floor
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            continue
        idx = idx[np.argsort(-s[idx], kind="stable")]
        if head.top_k > 0:
            idx = idx[: head.top_k]
        boxes = decode_boxes(loc[v, idx], priors[idx], variances[idx], head)
        iou = _iou_all(boxes)
        dropped = np.zeros(len(idx), bool)
        keep = []
        for i in range(len(idx)):
            if dropped[i]:
                continue
            keep.append(i)
            dropped |= iou[i] > head.nms_threshold
        if head.keep_top_k > 0:
            keep = keep[: head.keep_top_k]
        k = np.asarray(keep)
        r = np.empty((len(k), 7), np.float32)
        r[:, 0] = v
        r[:, 1] = label
        r[:, 2] = s[idx[k]]
        r[:, 3:] = boxes[k]
        rows.append(r)
    return np.concatenate(rows) if rows else np.zeros((0, 7), np.float32)


# ---------------------------------------------------------------------- torch and ONNX


def build_module(plan: Plan) -> Any:
    """The plan as a ``torch.nn.Module``: blob (N, 3, S, S) -> (loc (N, P, 4), conf (N, P, 2))."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SsdGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList()
            self.pads: list[tuple[int, int, int, int] | None] = []
            for c in plan.convs:
                w = torch.from_numpy(np.ascontiguousarray(c["weight"], np.float32))
                pt, pb, pl, pr = c["pads"]
                sym = pt == pb and pl == pr
                conv = nn.Conv2d(
                    w.shape[1] * c["groups"],
                    w.shape[0],
                    (int(w.shape[2]), int(w.shape[3])),
                    stride=c["stride"],
                    padding=(pt, pl) if sym else 0,
                    dilation=c["dilation"],
                    groups=c["groups"],
                    bias=True,
                )
                with torch.no_grad():
                    conv.weight.copy_(w)
                    assert conv.bias is not None
                    conv.bias.copy_(torch.from_numpy(np.asarray(c["bias"], np.float32)))
                self.convs.append(conv)
                self.pads.append(None if sym else (pl, pr, pt, pb))
            self.consts = nn.ParameterList()
            self.arg: list[int] = []
            for kind, _, _, arg in plan.steps:
                if kind in ("mul", "addc", "subc", "rsubc", "affine"):
                    vals = arg if kind == "affine" else (arg,)
                    for a in vals:
                        t = torch.from_numpy(np.asarray(a, np.float32).reshape(1, -1, 1, 1))
                        self.consts.append(nn.Parameter(t, requires_grad=False))
                    self.arg.append(len(self.consts) - len(vals))
                else:
                    self.arg.append(-1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            env: dict[str, torch.Tensor] = {}
            for (kind, out, ins, arg), k in zip(plan.steps, self.arg):
                if kind == "input":
                    env[out] = x
                    continue
                a = env[ins[0]]
                if kind == "conv":
                    pad = self.pads[arg]
                    env[out] = self.convs[arg](F.pad(a, pad) if pad is not None else a)
                elif kind == "mul":
                    env[out] = a * self.consts[k]
                elif kind == "addc":
                    env[out] = a + self.consts[k]
                elif kind == "subc":
                    env[out] = a - self.consts[k]
                elif kind == "rsubc":
                    env[out] = self.consts[k] - a
                elif kind == "affine":
                    env[out] = a * self.consts[k] + self.consts[k + 1]
                elif kind == "add":
                    env[out] = a + env[ins[1]]
                elif kind == "sub":
                    env[out] = a - env[ins[1]]
                elif kind == "relu6":
                    env[out] = torch.clamp(a, 0.0, 6.0)
                elif kind == "relu":
                    env[out] = torch.relu(a)
                elif kind == "sigmoid":
                    env[out] = torch.sigmoid(a)
                elif kind == "flatten":  # OpenCV flattens TF tensors in NHWC order
                    env[out] = a.permute(0, 2, 3, 1).flatten(1) if a.dim() == 4 else a.flatten(1)
                elif kind == "concat":
                    env[out] = torch.cat([env[i] for i in ins], dim=1)
            loc = env[plan.loc].reshape(-1, plan.num_priors, 4)
            conf = env[plan.conf].reshape(-1, plan.num_priors, len(KEEP_CLASSES))
            return loc, conf

    return SsdGraph().eval()


def source_key(pb: Path, pbtxt: Path, size: int) -> str:
    """The cache key of an export: both graph files' bytes, the input size, ``TRANSLATION``."""
    h = hashlib.sha256(f"{FORMAT}|{TRANSLATION}|{size}|".encode())
    for p in (pb, pbtxt):
        d = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                d.update(chunk)
        h.update(d.digest())
    return h.hexdigest()[:24]


def export_onnx(pb: Path, pbtxt: Path, size: int, key: str) -> tuple[bytes, Plan]:
    """Translate the graph and export it (bytes of an ONNX model with ``reid_ssd.*`` metadata)."""
    import onnx
    import torch

    nodes = read_text_graph(pbtxt)
    plan = translate(nodes, lambda names: read_constants(pb, names), pbtxt, size)
    net = build_module(plan)
    example = torch.zeros(2, 3, size, size)
    buf = io.BytesIO()
    f: Any = buf
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    net,
                    (example,),
                    f,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[LOC_NAME, CONF_NAME],
                    dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, LOC_NAME, CONF_NAME)},
                    do_constant_folding=True,
                )
        proto = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - the exporter raises anything
        raise CheckpointError(
            f"SSD graph '{pb}' cannot be exported to ONNX: {str(e).strip().splitlines()[0]}"
        ) from None
    meta = {
        "format": FORMAT,
        "key": key,
        "size": size,
        "num_priors": plan.num_priors,
        "feature_maps": [list(f) for f in plan.feature_maps],
        "classes": list(KEEP_CLASSES),
        "source": pb.name,
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"reid_ssd.{k}", json.dumps(v)
    proto.doc_string = (
        f"SSD {pb.name} for reid_pipeline: {INPUT_NAME} (N,3,{size},{size}) float32 RGB 0..255 "
        f"-> {LOC_NAME} (N,{plan.num_priors},4), {CONF_NAME} (N,{plan.num_priors},2) "
        "sigmoid background/person"
    )
    return proto.SerializeToString(), plan


# ---------------------------------------------------------------------- the runtime


class OrtSsd:
    """The SSD on an onnxruntime session: ``forward(blob)`` -> DetectionOutput rows."""

    runtime = "onnxruntime"

    def __init__(self, session: Any, meta: dict[str, Any], head: HeadParams, shown: str) -> None:
        self.session = session
        self.meta = meta
        self.head = head
        self.shown = shown
        self.size = int(meta["size"])
        self.feature_maps = [tuple(int(v) for v in f) for f in meta["feature_maps"]]
        self.priors, self.variances = prior_boxes(head, self.feature_maps, self.size, self.size)
        self.threads = int(session.get_session_options().intra_op_num_threads)
        if len(self.priors) != int(meta["num_priors"]):
            raise CheckpointError(
                f"ONNX file {shown}: {meta['num_priors']} anchors, but its text graph's priors "
                f"give {len(self.priors)}"
            )

    def describe(self) -> str:
        return f"onnxruntime, {self.threads} intra-op threads"

    def raw(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings (N, P, 4) and sigmoid [background, person] scores (N, P, 2)."""
        loc, conf = self.session.run([LOC_NAME, CONF_NAME], {INPUT_NAME: blob})
        return np.asarray(loc, np.float32), np.asarray(conf, np.float32)

    def forward(self, blob: np.ndarray, floor: float | None = None) -> np.ndarray:
        """DetectionOutput rows ``[view, 1, score, x1, y1, x2, y2]`` of the persons."""
        loc, conf = self.raw(blob)
        return detection_rows(
            loc,
            conf[..., PERSON_COLUMN],
            self.priors,
            self.variances,
            self.head,
            PERSON_LABEL,
            floor,
        )


def _read_meta(session: Any, shown: str, key: str) -> dict[str, Any]:
    raw = dict(session.get_modelmeta().custom_metadata_map)
    try:
        meta = {k[9:]: json.loads(v) for k, v in raw.items() if k.startswith("reid_ssd.")}
    except ValueError:
        raise CheckpointError(f"ONNX file {shown} has unreadable reid_ssd metadata") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"ONNX file {shown} is not a reid_pipeline SSD export")
    if meta.get("key") != key:
        raise CheckpointError(
            f"ONNX file {shown} was made from other graph files or another input size"
        )
    return meta


def make_blob(views: Sequence[np.ndarray], size: int) -> np.ndarray:
    """BGR views -> the graph's input, as ``SsdDetector.forward`` makes it for both runtimes:
    ``blobFromImages`` (resized to ``size`` x ``size``, RGB, float32 NCHW 0..255)."""
    return np.asarray(
        cv2.dnn.blobFromImages(
            list(views), 1.0, (size, size), (0.0, 0.0, 0.0), swapRB=True, crop=False
        ),
        np.float32,
    )


def verify_frames(n: int = 3, seed: int = 5) -> list[np.ndarray]:
    """``n`` 480x360 BGR frames with rendered people (40-220 px tall) on the demo's camera
    backgrounds: inputs on which the SSD finds persons, for checks and tests."""
    from reid_pipeline.datasets.scene import (
        composite,
        make_background,
        random_people,
        render_person,
    )

    rng = np.random.default_rng(seed)
    people = random_people(8, seed)
    out = []
    for i in range(n):
        frame = make_background(("indoor", "street")[i % 2], 480, 360, seed + i)
        for j in range(3 + i % 2):
            h = int(rng.integers(40, 220))
            rgb, alpha = render_person(
                people[(i * 3 + j) % len(people)], h, float(rng.uniform(0, 6.28)), 1 - 2 * (j % 2)
            )
            composite(frame, rgb, alpha, int(rng.integers(0, 440)), int(rng.integers(0, 360 - h)))
        out.append(frame)
    return out


def verify_views(frames: Sequence[np.ndarray], overlap: float = 0.2) -> list[np.ndarray]:
    """Each frame whole and as the default two tiles, left and right halves sharing
    ``overlap`` of a tile (``ssd.tile_windows`` 2x1): the views the detector makes."""
    views: list[np.ndarray] = []
    for f in frames:
        w = f.shape[1]
        tw = round(w / (2 - overlap))
        views += [f, f[:, :tw], f[:, w - tw :]]
    return views


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None, :] - inter + 1e-12)


@dataclass
class Agreement:
    """How two runtimes' person boxes compare on the same views or frames (``add``)."""

    floor: float = VERIFY_FLOOR
    boxes_a: int = 0  # boxes at >= floor, runtime a
    boxes_b: int = 0
    matched: int = 0  # boxes of either side matched (IoU >= IOU_MIN, |ds| <= SCORE_TOL)
    unmatched: int = 0  # boxes at >= floor + SCORE_TOL without such a match on the other side
    min_iou: float = 1.0  # of the matched pairs
    max_dscore: float = 0.0
    max_dprob: float = 0.0  # per anchor, person score (``verify_against_opencv``)
    max_dloc: float = 0.0  # per anchor, box encoding

    def ok(self) -> bool:
        return self.unmatched == 0

    def add(self, ba: np.ndarray, sa: np.ndarray, bb: np.ndarray, sb: np.ndarray) -> None:
        """One view's (or frame's) boxes + scores of each side. Every box at >= ``floor`` is
        matched to the other side's best-overlapping box at >= floor - ``SCORE_TOL`` (a box
        just under the floor on one side is no disagreement); a box at >= floor + SCORE_TOL
        without a match within ``IOU_MIN`` / ``SCORE_TOL`` is ``unmatched``."""
        lo = self.floor - SCORE_TOL
        self.boxes_a += int((sa >= self.floor).sum())
        self.boxes_b += int((sb >= self.floor).sum())
        for b1, s1, b2, s2 in ((ba, sa, bb, sb), (bb, sb, ba, sa)):
            b2, s2 = b2[s2 >= lo], s2[s2 >= lo]
            iou = box_iou(b1, b2)
            for i in np.flatnonzero(s1 >= self.floor):
                good = (iou[i] >= IOU_MIN) & (np.abs(s2 - s1[i]) <= SCORE_TOL)
                if good.any():
                    j = int(np.argmax(np.where(good, iou[i], -1.0)))
                    self.matched += 1
                    self.min_iou = min(self.min_iou, float(iou[i, j]))
                    self.max_dscore = max(self.max_dscore, float(abs(s2[j] - s1[i])))
                elif s1[i] >= self.floor + SCORE_TOL:
                    self.unmatched += 1

    def describe(self) -> str:
        text = (
            f"{self.boxes_a} vs {self.boxes_b} person boxes at score >= {self.floor:g}, "
            f"{self.unmatched} unmatched, min IoU {self.min_iou:.4f}, max |score difference| "
            f"{self.max_dscore:.1e}"
        )
        if self.max_dprob or self.max_dloc:
            text += (
                f"; per anchor max |score difference| {self.max_dprob:.1e}, max |box "
                f"encoding difference| {self.max_dloc:.1e}"
            )
        return text


def compare_rows(
    rows_a: np.ndarray, rows_b: np.ndarray, n_views: int, into: Agreement
) -> Agreement:
    """``into.add`` for each view of two runtimes' DetectionOutput rows (the person rows)."""
    a = np.asarray(rows_a, np.float32).reshape(-1, 7)
    b = np.asarray(rows_b, np.float32).reshape(-1, 7)
    a, b = a[a[:, 1] == PERSON_LABEL], b[b[:, 1] == PERSON_LABEL]
    for v in range(n_views):
        ra, rb = a[a[:, 0] == v], b[b[:, 0] == v]
        into.add(ra[:, 3:7], ra[:, 2], rb[:, 3:7], rb[:, 2])
    return into


def verify_against_opencv(
    ort: OrtSsd, net: Any, views: Sequence[np.ndarray] | None = None, batch: int = 4
) -> Agreement:
    """Run both runtimes on the same views; ``CheckpointError`` unless they agree."""
    views = list(views) if views is not None else verify_views(verify_frames())
    size = ort.size
    agr = Agreement()
    names = [n for n in net.getLayerNames()]
    loc_name, conf_name = _opencv_outputs(net, names)
    for s in range(0, len(views), batch):
        blob = make_blob(views[s : s + batch], size)
        net.setInput(blob)
        cv_loc, cv_conf, cv_rows = net.forward([loc_name, conf_name, names[-1]])
        n = blob.shape[0]
        cv_conf = np.asarray(cv_conf, np.float32).reshape(n, -1, ort.head.num_classes)
        loc, conf = ort.raw(blob)
        agr.max_dprob = max(agr.max_dprob, float(np.abs(cv_conf[..., KEEP_CLASSES] - conf).max()))
        # OpenCV's TF importer swaps the box-encoding convs' outputs of a graph with
        # loc_pred_transposed to [dx, dy, dw, dh] (its DetectionOutput then reads them so)
        cv_loc = np.asarray(cv_loc, np.float32).reshape(loc.shape)
        agr.max_dloc = max(
            agr.max_dloc,
            min(float(np.abs(cv_loc[..., p] - loc).max()) for p in ([0, 1, 2, 3], [1, 0, 3, 2])),
        )
        rows = detection_rows(loc, conf[..., PERSON_COLUMN], ort.priors, ort.variances, ort.head)
        compare_rows(np.asarray(cv_rows, np.float32).reshape(-1, 7), rows, n, agr)
    if not agr.ok() or agr.max_dprob > SCORE_TOL:
        raise CheckpointError(
            f"ONNX export {ort.shown} does not match OpenCV DNN on the check frames: "
            f"{agr.describe()}"
        )
    return agr


def _opencv_outputs(net: Any, names: Sequence[str]) -> tuple[str, str]:
    """OpenCV layer names of DetectionOutput's box-encoding and score inputs."""
    last = net.getLayer(names[-1])
    if last.type != "DetectionOutput":
        raise CheckpointError("the OpenCV SSD net does not end in DetectionOutput")
    # the TF importer keeps the text graph's node names: the two concats before it
    loc = [n for n in names if n.endswith("BoxEncodingPredictor/concat")]
    conf = [n for n in names if n.endswith("ClassPredictor/concat/sigmoid")]
    if not loc or not conf:
        raise CheckpointError(
            "the OpenCV SSD net has no BoxEncodingPredictor/ClassPredictor concat"
        )
    return loc[0], conf[0]


# ---------------------------------------------------------------------- choice and cache


def import_onnxruntime() -> Any:
    """``onnxruntime``, or the one-line ``ConfigError`` of ``detector.ssd_runtime``."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "config key 'detector.ssd_runtime': onnxruntime is not installed (pip install "
            "onnxruntime, or set detector.ssd_runtime=opencv)"
        ) from None
    return onnxruntime


def default_threads() -> int:
    from reid_pipeline.embed.onnx import default_threads as dt

    return dt()


def cache_file(key: str) -> Path:
    from reid_pipeline.embed.onnx import cache_dir

    return cache_dir() / f"ssd-{key}.onnx"


def load_cached(pb: Path, pbtxt: Path, size: int, net_loader: Any, *, threads: int = 0) -> OrtSsd:
    """The ONNX export of (``pb``, ``pbtxt``) at ``size`` from the cache, else exported,
    checked against OpenCV DNN (``net_loader(pb, pbtxt)`` gives the OpenCV net) and cached."""
    from reid_pipeline.embed.onnx import make_session, write_atomic
    from reid_pipeline.errors import OutputError

    import_onnxruntime()
    for p, what in ((pb, "graph"), (pbtxt, "text graph")):
        if not p.is_file():
            raise CheckpointError(f"SSD {what} file '{p}' does not exist")
    threads = threads if threads > 0 else default_threads()
    key = source_key(pb, pbtxt, size)
    path = cache_file(key)
    if path.is_file():
        try:
            session = make_session(path, threads=threads, name=repr(str(path)))
            meta = _read_meta(session, repr(str(path)), key)
            head = head_of(read_text_graph(pbtxt), pbtxt)
            if len(head.priors) != len(meta["feature_maps"]):
                raise CheckpointError(f"ONNX file {path} does not fit its text graph's priors")
            ort = OrtSsd(session, meta, head, repr(str(path)))
            log.debug("SSD: onnxruntime export from %s", path)
            return ort
        except CheckpointError as e:
            log.warning("%s; exporting the SSD again", e)
    t0 = time.perf_counter()
    data, plan = export_onnx(pb, pbtxt, size, key)
    session = make_session(data, threads=threads, name=f"the SSD export of '{pb}'")
    ort = OrtSsd(session, _read_meta(session, "'<in memory>'", key), plan.head, f"of '{pb}'")
    agr = verify_against_opencv(ort, net_loader(pb, pbtxt))
    try:
        write_atomic(path, data)
        where = str(path)
        ort.shown = repr(where)
    except OutputError as e:
        log.warning("%s; running the SSD export from memory", e)
        where = "memory"
    log.info(
        "SSD: exported %s (%dx%d) to ONNX (%s) in %.1f s; against OpenCV DNN: %s",
        pb.name,
        size,
        size,
        where,
        time.perf_counter() - t0,
        agr.describe(),
    )
    return ort


def make_runtime(cfg: Any, pb: Path, pbtxt: Path, size: int, net_loader: Any) -> OrtSsd | None:
    """The onnxruntime SSD ``detector.ssd_runtime`` asks for, or None for OpenCV DNN.
    ``auto``: onnxruntime when it is importable and the graph translates and checks out,
    else OpenCV with one log line saying why; ``onnxruntime``: that or a one-line error.
    ``net_loader(pb, pbtxt)``: the OpenCV net, for the check of a new export."""
    want = str(getattr(cfg, "ssd_runtime", "auto") or "auto")
    if want not in RUNTIMES:
        raise ConfigError(
            f"config key 'detector.ssd_runtime': must be one of {', '.join(RUNTIMES)}, got {want!r}"
        )
    if want == "opencv":
        return None
    if want == "onnxruntime":
        return load_cached(pb, pbtxt, size, net_loader)
    try:
        import_onnxruntime()
    except ConfigError:
        log.info("detector.ssd_runtime=auto: onnxruntime is not installed; SSD runs on OpenCV DNN")
        return None
    try:
        return load_cached(pb, pbtxt, size, net_loader)
    except CheckpointError as e:
        log.warning("detector.ssd_runtime=auto: %s; SSD runs on OpenCV DNN", e)
        return None


__all__ = [
    "RUNTIMES",
    "Agreement",
    "OrtSsd",
    "compare_rows",
    "detection_rows",
    "load_cached",
    "make_runtime",
    "parse_text_format",
    "prior_boxes",
    "read_constants",
    "read_text_graph",
    "translate",
    "verify_against_opencv",
    "verify_frames",
]
