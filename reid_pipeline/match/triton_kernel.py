"""Triton kernel for dichotomy scoring: s[i, j] = b - sum_d w_d |q_id - g_jd|.

Why a kernel of our own: the score is a weighted L1 distance, which tensor cores cannot
do, and ``torch.cdist(p=1)`` reaches ~6e8 pairs/s on an H100. The work is N*M*D
sub/abs/add steps on the CUDA cores, so the ceiling is set by instructions per pair-dim.

Three arithmetic modes share one tiled kernel (query tile x gallery tile, loop over D):

* ``MODE_F32``: inputs in any float dtype, upcast to fp32, ``w`` loaded per D-chunk and
  fused, fp32 accumulate. Exact to fp32 rounding; works for any sign of ``w``.
* ``MODE_PACKED``: the fast path. Because ``w >= 0``, ``w_d |a - b| = |w_d a - w_d b|``, so
  ``w`` is folded into the operands once (O((N+M)D) work, done by :func:`pack_operand`)
  together with a power-of-two scale that puts the values in fp16's best range. Two
  dimensions travel in one 32-bit register (fp16x2); each register pair costs one packed
  subtract and one packed add-of-absolute (``sub.f16x2`` + ``abs``/``add.f16x2``): one
  instruction per pair-dimension instead of two or three in fp32 (ptxas folds the abs into
  the add's operand modifier: ``HFMA2.MMA`` + ``HADD2`` per 2 dims in the SASS). D-chunks are
  summed in fp16 and flushed into an fp32 accumulator, so rounding stays at fp16's
  ~5e-4 relative level rather than growing with D.
* ``MODE_EMULATE``: the packed mode's arithmetic written with plain ``tl`` ops instead of
  inline PTX, so the Triton interpreter (``TRITON_INTERPRET=1``, CPU) can run the very same
  tiling, masking and top-k code in tests. Inline assembly cannot run there.

``TOPK > 0`` fuses per-query top-k selection: a program walks a slice of the gallery,
keeps the best ``TOPK`` (a power of two) scores and their indices in registers, and writes
only those, so the N x M matrix is never stored. Slices are merged on the host side by
:func:`reid_pipeline.match.scoring.topk_pairs`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

MODE_F32 = 0
MODE_PACKED = 1
MODE_EMULATE = 2

# fp16 range used by the packed mode: the largest |w_d x_d| maps near this value, so an
# fp16 lane summing 2 * _MAX_BK terms (each <= 2 * 256) stays far below 65504.
PACK_TARGET_MAX = 256.0
# packed operands are padded to a multiple of this many rows (the largest tile side)
PACK_ROWS = 512


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (tests); inline PTX is unavailable."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _l1_step_f16x4(q, g, part):
    # part (fp16x2 in an int32) += |q - g| over 4 fp16 lanes held in two int64 operands
    return tl.inline_asm_elementwise(
        """{
        .reg .b32 q0, q1, g0, g1, t0, t1;
        mov.b64 {q0, q1}, $1;
        mov.b64 {g0, g1}, $2;
        sub.rn.f16x2 t0, q0, g0;
        sub.rn.f16x2 t1, q1, g1;
        abs.f16x2 t0, t0;
        abs.f16x2 t1, t1;
        add.rn.f16x2 t0, t0, $3;
        add.rn.f16x2 $0, t0, t1;
        }""",
        "=r,l,l,r",
        [q, g, part],
        dtype=tl.int32,
        is_pure=True,
        pack=1,
    )


@triton.jit
def _f16(x, shift: tl.constexpr):
    # one fp16 lane of an int64 pack, as fp16 (interpreter-friendly bit ops)
    return ((x >> shift) & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True)


@triton.jit
def _l1_step_emulated(q, g, part):
    # the same arithmetic as _l1_step_f16x4 with plain tl ops; part holds two fp16 lanes
    lo = (part & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True)
    hi = ((part >> 16) & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True)
    lo = (tl.abs(_f16(q, 0) - _f16(g, 0)) + lo) + tl.abs(_f16(q, 32) - _f16(g, 32))
    hi = (tl.abs(_f16(q, 16) - _f16(g, 16)) + hi) + tl.abs(_f16(q, 48) - _f16(g, 48))
    lo_bits = lo.to(tl.uint16, bitcast=True).to(tl.int32)
    hi_bits = hi.to(tl.uint16, bitcast=True).to(tl.int32)
    return lo_bits | (hi_bits << 16)


@triton.jit
def _flush(part):
    lo = (part & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    hi = ((part >> 16) & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    return lo + hi


@triton.jit
def _tile_l1(
    Q,
    G,
    W,
    offs_m,
    offs_n,
    N,
    M,
    K,
    stride_q,
    stride_g,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    MODE: tl.constexpr,
):
    """sum_k w_k |q_mk - g_nk| for one (BM, BN) tile, fp32.

    MODE_F32: Q (N, K), G (M, K) row-major floats, K = dimensions.
    Packed modes: Q (K, N), G (K, M) int64, K = groups of 4 fp16 dimensions, stored
    K-major so that one group of a tile's rows is contiguous (wide, coalesced loads), and
    the loop walks one group at a time: an outer product over the tile, accumulated in
    fp16x2 for BK groups (8*BK terms per lane) then flushed into fp32.
    """
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    m_ok = offs_m < N
    n_ok = offs_n < M
    if MODE == 0:
        for k0 in range(0, K, BK):
            offs_k = k0 + tl.arange(0, BK)
            k_ok = offs_k < K
            q = tl.load(
                Q + offs_m[:, None] * stride_q + offs_k[None, :],
                mask=m_ok[:, None] & k_ok[None, :],
                other=0,
            ).to(tl.float32)
            g = tl.load(
                G + offs_n[:, None] * stride_g + offs_k[None, :],
                mask=n_ok[:, None] & k_ok[None, :],
                other=0,
            ).to(tl.float32)
            w = tl.load(W + offs_k, mask=k_ok, other=0.0).to(tl.float32)
            d = tl.abs(q[:, None, :] - g[None, :, :])
            acc += tl.sum(d * w[None, None, :], axis=2)
    else:
        # K is a multiple of BK (the host pads with zero groups: |0 - 0| adds nothing)
        for k0 in range(0, K, BK):
            part = tl.zeros((BM, BN), dtype=tl.int32)
            for kk in tl.static_range(BK):
                # no masks: the host pads N and M to PACK_ROWS, so every tile is in bounds
                q = tl.load(Q + (k0 + kk) * stride_q + offs_m)
                g = tl.load(G + (k0 + kk) * stride_g + offs_n)
                if MODE == 1:
                    part = _l1_step_f16x4(q[:, None], g[None, :], part)
                else:
                    part = _l1_step_emulated(q[:, None], g[None, :], part)
            acc += _flush(part)
    return acc


# Sizes and strides vary per call; specializing on them would recompile for every size.
# Packed strides are multiples of PACK_ROWS, so their specialization is always the same.
@triton.jit(do_not_specialize=["N", "M", "K", "stride_s", "N_BUCKET", "M_BUCKET"])
def dichotomy_kernel(
    Q,
    G,
    W,
    S,
    TV,
    TI,
    N,
    M,
    K,
    stride_q,
    stride_g,
    stride_s,
    scale,
    bias,
    N_BUCKET,
    M_BUCKET,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    MODE: tl.constexpr,
    TOPK: tl.constexpr,
):
    """Grid: (cdiv(N, BM), splits). The gallery's tiles are cut into ``splits`` equal runs;
    without TOPK, splits = cdiv(M, BN) (one tile per program) and scores go to S (N, M)
    fp32. With TOPK a program keeps the best TOPK per query over its run and writes TV/TI
    (splits, N, TOPK). N_BUCKET/M_BUCKET only key the autotuner (size classes)."""
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    tiles_total = tl.cdiv(M, BN)
    tiles_per_split = tl.cdiv(tiles_total, tl.num_programs(1))
    t_start = pid_s * tiles_per_split
    t_stop = tl.minimum(t_start + tiles_per_split, tiles_total)
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_ok = offs_m < N
    if TOPK > 0:
        run_v = tl.full((BM, TOPK), float("-inf"), dtype=tl.float32)
        run_i = tl.full((BM, TOPK), -1, dtype=tl.int32)
        slot = tl.arange(0, TOPK)
        cols = tl.arange(0, BN)
    for t in range(t_start, t_stop):
        n0 = t * BN
        offs_n = n0 + tl.arange(0, BN)
        n_ok = offs_n < M
        acc = _tile_l1(Q, G, W, offs_m, offs_n, N, M, K, stride_q, stride_g, BM, BN, BK, MODE)
        s = bias - acc * scale
        if TOPK == 0:
            tl.store(
                S + offs_m[:, None].to(tl.int64) * stride_s + offs_n[None, :],
                s,
                mask=m_ok[:, None] & n_ok[None, :],
            )
        else:
            s = tl.where(n_ok[None, :], s, float("-inf"))
            # Entries that beat a row's current worst kept score; after the first tiles
            # there are few, so the merge below runs a few cheap rounds, not TOPK.
            worst = tl.min(run_v, axis=1)
            above = tl.sum((s > worst[:, None]).to(tl.int32), axis=1)
            rounds = tl.minimum(tl.max(above, axis=0), TOPK)
            for _r in range(rounds):
                # move each row's best remaining tile entry into its worst slot if better
                mt, it = tl.max(s, axis=1, return_indices=True)
                mr, ir = tl.min(run_v, axis=1, return_indices=True)
                put = (mt > mr)[:, None] & (slot[None, :] == ir[:, None])
                run_v = tl.where(put, mt[:, None], run_v)
                run_i = tl.where(put, (n0 + it)[:, None], run_i)
                s = tl.where(cols[None, :] == it[:, None], float("-inf"), s)
    if TOPK > 0:
        base = (pid_s * N + offs_m[:, None]).to(tl.int64) * TOPK + slot[None, :]
        tl.store(TV + base, run_v, mask=m_ok[:, None])
        tl.store(TI + base, run_i, mask=m_ok[:, None])


def _packed_configs() -> list[triton.Config]:
    """Tile shapes for the packed mode. Triton lays a (BM, BN) tile out with 32 lanes (and
    then the warps) along BN, so each thread holds BM rows x BN/(32*warps) columns: the
    query values it needs are warp-wide broadcasts (wide loads), and BN/(32*warps) >= 2
    halves the load count per arithmetic step. BK groups of 4 dims go between fp32 flushes.
    """
    # measured on an H100 (docs/benchmarks.md): 16x256x16/4 warps and 16x128x16/2 warps
    # lead at ~3.3e10 pairs/s; the ptxas register cap (128) is raised in two variants
    shapes = [
        (16, 256, 16, 4, None),
        (16, 256, 8, 4, None),
        (16, 512, 8, 4, None),
        (16, 128, 16, 2, None),
        (8, 512, 16, 4, None),
        (16, 256, 16, 4, 168),
        (16, 256, 16, 4, 200),
        (32, 256, 8, 4, None),
    ]
    return [
        triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=nw, num_stages=1, maxnreg=r)
        for bm, bn, bk, nw, r in shapes
    ]


def _f32_configs() -> list[triton.Config]:
    shapes = [(32, 32, 8, 4), (64, 64, 4, 4), (32, 64, 8, 4), (64, 32, 8, 4)]
    return [
        triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=nw, num_stages=2)
        for bm, bn, bk, nw in shapes
    ]


_KEY = ["K", "N_BUCKET", "M_BUCKET", "MODE", "TOPK"]
packed_kernel_tuned = triton.autotune(configs=_packed_configs(), key=_KEY)(dichotomy_kernel)
f32_kernel_tuned = triton.autotune(configs=_f32_configs(), key=_KEY)(dichotomy_kernel)

# ------------------------------------------------------------------------- host side

_MAX_BK = 16  # packed K (groups of 4 dims) is padded to a multiple of this
_INTERP_CFG = {"BM": 16, "BN": 32, "BK": 4}  # one small config: the interpreter is slow


def _bucket(n: int) -> int:
    """Size class for the autotuner key: tuned once per power of two, not per size."""
    return max(0, int(n - 1).bit_length())


def _pad_to(n: int, m: int) -> int:
    return -(-n // m) * m


def pack_scale(q: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> float:
    """Power-of-two factor putting max |w_d x_d| over q and g near PACK_TARGET_MAX.

    A power of two keeps the scaling itself exact; the range keeps fp16 away from both
    subnormals and overflow: one fp16 lane sums at most 2 * _MAX_BK terms of <= 2 * 256.
    """
    amax = 0.0
    wf = w.float()
    for x in (q, g):
        for i in range(0, x.shape[0], 65536):
            amax = max(amax, float((x[i : i + 65536].float() * wf).abs().max()) if x.numel() else 0)
    if not math.isfinite(amax):
        raise ValueError("query/gallery embeddings contain inf or NaN")
    if amax == 0.0:
        return 1.0
    return 2.0 ** math.floor(math.log2(PACK_TARGET_MAX / amax))


def pack_operand(x: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """(R, D) floats -> (Kp, Rp) int64: rows of alpha * w * x in fp16, 4 dims per int64,
    K-major (one group of every row contiguous), D padded with zeros to a multiple of
    4*_MAX_BK and R padded to a multiple of PACK_ROWS so kernel loads need no masks."""
    r, d = x.shape
    dp = _pad_to(max(d, 1), 4 * _MAX_BK)
    rp = _pad_to(max(r, 1), PACK_ROWS)
    buf = torch.zeros(rp, dp, dtype=torch.float16, device=x.device)
    wf = w.float() * alpha
    for i in range(0, r, 65536):
        j = min(r, i + 65536)
        buf[i:j, :d] = (x[i:j].float() * wf).to(torch.float16)
    return buf.view(torch.int64).t().contiguous()


@dataclass
class PackedGallery:
    """A gallery packed once for the fp16x2 kernel (w folded in, scaled, K-major, padded).

    Galleries change rarely and are scored often; packing costs a few passes over the
    gallery (~2 ms for 262k x 512 on an H100), so keep this object while the gallery and
    the classifier weights stay the same.
    """

    data: torch.Tensor  # (Kp, Mp) int64
    rows: int
    dim: int
    alpha: float
    w: torch.Tensor

    @classmethod
    def build(cls, g: torch.Tensor, w: torch.Tensor) -> PackedGallery:
        if bool((w < 0).any()):
            raise ValueError("packed scoring needs non-negative classifier weights w")
        empty = g[:0]
        alpha = pack_scale(empty, g, w)
        return cls(pack_operand(g, w, alpha), g.shape[0], g.shape[1], alpha, w)


def _gallery_rows(g: torch.Tensor | None, gallery: PackedGallery | None) -> int:
    """Rows of the gallery being scored: the packed one when given, else ``g``."""
    if gallery is not None:
        return gallery.rows
    if g is None:
        raise ValueError("triton scoring needs a gallery: a tensor g or a PackedGallery")
    return int(g.shape[0])


def _launch(
    q: torch.Tensor,
    g: torch.Tensor | None,
    w: torch.Tensor,
    bias: float,
    topk: int,
    packed: bool,
    config: dict | None = None,
    gallery: PackedGallery | None = None,
) -> tuple[torch.Tensor, ...]:
    """Pack (if asked), allocate, launch. ``config`` (BM, BN, BK, num_warps) bypasses the
    autotuner: one compile, used by correctness checks over many shapes. ``gallery`` is a
    pre-packed gallery (then ``g`` is unused); the query is packed with its scale unless
    the query's range would overflow fp16 there, in which case the gallery is re-packed."""
    n = q.shape[0]
    m = _gallery_rows(g, gallery)
    dev = q.device
    interp = interpreting()
    if gallery is not None:
        alpha = gallery.alpha
        qmax = float((q.float() * gallery.w.float()).abs().max()) if n else 0.0
        if qmax * alpha > 4 * PACK_TARGET_MAX:
            raise ValueError(
                "query values exceed the packed gallery's range; repack with "
                "PackedGallery.build on the new data"
            )
        qa, ga = pack_operand(q, gallery.w, alpha), gallery.data
        k, sq, sg, scale = qa.shape[0], qa.shape[1], ga.shape[1], 1.0 / alpha
        mode = MODE_EMULATE if interp else MODE_PACKED
        wa = gallery.w.float().contiguous()
    elif g is None:  # _gallery_rows has refused this already
        raise ValueError("triton scoring needs a gallery: a tensor g or a PackedGallery")
    elif packed:
        alpha = pack_scale(q, g, w)
        qa, ga = pack_operand(q, w, alpha), pack_operand(g, w, alpha)
        k, sq, sg, scale = qa.shape[0], qa.shape[1], ga.shape[1], 1.0 / alpha
        mode = MODE_EMULATE if interp else MODE_PACKED
        wa = w.float().contiguous()
    else:
        qa, ga = q.contiguous(), g.contiguous()
        k, sq, sg, scale = q.shape[1], qa.stride(0), ga.stride(0), 1.0
        mode = MODE_F32
        wa = w.float().contiguous()
    kp = 0 if topk <= 0 else 1 << max(0, int(topk - 1).bit_length())
    # programs wanted in flight for the top-k grid (each walks a slice of the gallery)
    target = 2 if interp else 4 * torch.cuda.get_device_properties(dev).multi_processor_count
    if kp == 0:
        out = torch.empty(n, m, dtype=torch.float32, device=dev)
        tv = ti = out  # unused
        splits_alloc = 0
    else:
        out = torch.empty(1, dtype=torch.float32, device=dev)
        splits_alloc = max(1, min(256, _pad_to(m, 64) // 64, target))
        tv = torch.full((splits_alloc, n, kp), float("-inf"), dtype=torch.float32, device=dev)
        ti = torch.full((splits_alloc, n, kp), -1, dtype=torch.int32, device=dev)

    def grid(meta: dict) -> tuple[int, int]:
        rows = triton.cdiv(n, meta["BM"])
        tiles = triton.cdiv(m, meta["BN"])
        if kp == 0:
            return rows, tiles
        want = max(1, target // rows)
        return rows, max(1, min(splits_alloc, tiles, want))

    args = (qa, ga, wa, out, tv, ti, n, m, k, sq, sg, m, scale, float(bias), _bucket(n), _bucket(m))
    if interp or config is not None:
        cfg = dict(config or _INTERP_CFG)
        nw = cfg.pop("num_warps", 4)
        dichotomy_kernel[grid(cfg)](*args, MODE=mode, TOPK=kp, num_warps=nw, **cfg)
    elif packed:
        packed_kernel_tuned[grid](*args, MODE=mode, TOPK=kp)
    else:
        f32_kernel_tuned[grid](*args, MODE=mode, TOPK=kp)
    if kp == 0:
        return (out,)
    return tv, ti


def triton_scores(
    q: torch.Tensor,
    g: torch.Tensor | None,
    w: torch.Tensor,
    bias: float = 0.0,
    packed: bool = True,
    config: dict | None = None,
    gallery: PackedGallery | None = None,
) -> torch.Tensor:
    """(N, M) fp32 scores b - sum_d w_d |q_d - g_d| computed by the kernel.

    packed=True needs w >= 0 (the folding identity); the caller checks that. With a
    ``gallery`` (PackedGallery) ``g`` may be None and only the queries are packed.
    """
    m = _gallery_rows(g, gallery)
    if q.shape[0] == 0 or m == 0:
        return torch.empty(q.shape[0], m, dtype=torch.float32, device=q.device)
    return _launch(q, g, w, bias, 0, packed, config, gallery)[0]


def triton_topk(
    q: torch.Tensor,
    g: torch.Tensor | None,
    w: torch.Tensor,
    bias: float,
    k: int,
    packed: bool = True,
    config: dict | None = None,
    gallery: PackedGallery | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k scores and gallery indices per query, descending, without the N x M matrix.

    The kernel leaves one unsorted candidate list per (gallery slice, query); a small
    torch.topk over splits * k candidates merges them. Indices are int64; where the
    gallery has fewer than k entries the tail is (-inf, -1).
    """
    n = q.shape[0]
    m = _gallery_rows(g, gallery)
    if n == 0 or m == 0 or k <= 0:
        return (
            torch.full((n, max(k, 0)), float("-inf"), device=q.device),
            torch.full((n, max(k, 0)), -1, dtype=torch.int64, device=q.device),
        )
    tv, ti = _launch(q, g, w, bias, k, packed, config, gallery)
    cand_v = tv.permute(1, 0, 2).reshape(n, -1)
    cand_i = ti.permute(1, 0, 2).reshape(n, -1)
    v, pos = torch.topk(cand_v, k, dim=1)
    return v, torch.gather(cand_i, 1, pos).to(torch.int64)
