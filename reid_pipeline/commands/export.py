"""``reid export``: a checkpoint's embedding network to ONNX, checked against PyTorch.

    uv run reid export runs/m12/best.pt --out models/m12.onnx
    uv run reid export default                       # the bundled model, into the cache
                                                     # that model.runtime=auto serves from

The file holds backbone + adapter (input ``images`` float32 (N, 3, H, W), RGB,
ImageNet-normalised, N dynamic; output ``embedding`` (N, D)), opset 17, and in its
metadata the model version, input size and the pair classifier (``w``, ``b``, Platt
calibration). Before it is written, onnxruntime is run against PyTorch on generated person
crops (batches 1, 7, 16): per image 1 - cos <= 1e-4, per pair |dP(same)| <= 1e-3.
Serve it with ``--set model.runtime=onnxruntime --set model.onnx=FILE`` (or leave
``model.runtime=auto``: on a CPU it finds the export beside the checkpoint).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = sub.add_parser(
        "export",
        help="export a checkpoint's embedder to ONNX (for model.runtime=onnxruntime)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint",
        help="our checkpoint, a torchreid model-zoo state_dict, or 'default' (the bundled model)",
    )
    p.add_argument(
        "--out",
        metavar="FILE.onnx",
        help="where to write it; default: beside the checkpoint (<name>.onnx), or the "
        "export cache when that folder is not writable (where model.runtime=auto looks)",
    )
    p.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help="ONNX opset (default 17)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the onnxruntime-vs-PyTorch check (not recommended)",
    )
    p.add_argument(
        "--backbone",
        dest="cfg__model__backbone",
        metavar="ARCH",
        help="architecture of a torchreid model-zoo file (our checkpoints declare theirs; "
        "key: model.backbone)",
    )
    add_common(p)
    p.set_defaults(func=run)


def _model_config(cfg: Config, spec: str, backbone_given: bool) -> Any:
    """``cfg.model``, with the backbone our checkpoint declares (unless --backbone says)."""
    import dataclasses

    from reid_pipeline.embed.model import DEFAULT_CHECKPOINT, is_checkpoint, read_checkpoint

    if backbone_given:
        return cfg.model
    path = DEFAULT_CHECKPOINT if spec in ("", "default") else Path(spec).expanduser()
    if path.is_file() and is_checkpoint(path):
        arch = read_checkpoint(path).get("arch") or {}
        if isinstance(arch, dict) and arch.get("backbone"):
            return dataclasses.replace(cfg.model, backbone=str(arch["backbone"]))
    return cfg.model


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.embed.onnx import OPSET, export_locations, export_model, load_export
    from reid_pipeline.errors import ConfigError

    opset = int(args.opset) if args.opset is not None else OPSET
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset: must be 13..21, got {opset}")
    if args.out and not str(args.out).lower().endswith(".onnx"):
        raise ConfigError(f"--out: must name a .onnx file, got {args.out!r}")
    mcfg = _model_config(cfg, args.checkpoint, args.cfg__model__backbone is not None)
    model = load_model(args.checkpoint, mcfg, "cpu")
    out = Path(args.out).expanduser() if args.out else export_locations(model)[1]
    res = export_model(
        model, out, opset=opset, verify=not args.no_verify, threads=cfg.model.threads
    )
    # the written file, read back as serving reads it (metadata, shapes, model version)
    load_export(out, threads=cfg.model.threads, expect_version=model.model_version)
    h, w = model.input_size
    print(
        f"exported {model.model_version} ({model.arch_name}, input {h}x{w}, "
        f"{model.embed_dim}-d) to {out}"
    )
    print(
        f"  ONNX opset {opset}, dynamic batch axis, {len(res.data) / 1e6:.1f} MB, "
        f"{res.seconds:.1f} s"
    )
    if res.verification is not None:
        print(f"  check: {res.verification.describe()}")
    else:
        print("  check: skipped (--no-verify)")
    print(f"  serve it: --set model.runtime=onnxruntime --set model.onnx={out}")
    return 0
