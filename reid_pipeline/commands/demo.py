"""``reid demo``: the offline demo - a generated two-camera scene processed end to end.

Generates the scene (same people walking through a lobby and a street camera, different
backgrounds, light and scale, sometimes two people at once; ground truth beside it) under
``<out>/scene``, runs the real pipeline on it (HOG detection, tracking, the bundled demo
ReID weights, matching, SQL gallery), writes the usual ``reid process`` outputs and prints
how many identities were found and how many persons were matched across cameras correctly.
Needs no network and no downloads.
"""

from __future__ import annotations

import argparse
from typing import Any

from reid_pipeline.config import Config, load_config, parse_set, read_yaml


def register(sub: Any) -> None:
    from reid_pipeline.cli import add_common
    from reid_pipeline.commands.process import add_process_options

    p = sub.add_parser("demo", help="offline demo: generated two-camera scene, end to end",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", dest="cfg__output__demo_people", type=int, metavar="N",
                   help="people in the generated scene (key: output.demo_people)")
    p.add_argument("--seed", dest="cfg__output__demo_seed", type=int, metavar="N",
                   help="scene seed (key: output.demo_seed)")
    add_process_options(p)
    add_common(p)
    p.set_defaults(func=run)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def demo_config(args: argparse.Namespace) -> Config:
    """Defaults <- the demo's settings <- --config file <- flags <- --set."""
    from reid_pipeline.demo.scenario import demo_config_overrides
    from reid_pipeline.errors import ConfigError

    merged: dict[str, Any] = {"output.out": "runs/demo", **demo_config_overrides()}
    if getattr(args, "config", None):
        load_config(args.config)  # validates the file, names a bad key
        try:
            with open(args.config) as fh:
                merged.update(_flatten(read_yaml(fh) or {}))
        except OSError as e:
            raise ConfigError(f"config file {args.config!r}: {e.strerror or e}") from None
    for name, value in vars(args).items():
        if name.startswith("cfg__") and value is not None:
            merged[name[5:].replace("__", ".")] = value
    for item in getattr(args, "set", []) or []:
        k, v = parse_set(item)
        merged[k] = v
    return load_config(None, merged)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.demo.scenario import run_demo

    cfg = demo_config(args)
    res = run_demo(cfg, people=cfg.output.demo_people, seed=cfg.output.demo_seed)
    det = cfg.detector.kind
    print(f"demo scene: {res.scene_dir} (generated; ground truth in gt.csv)")
    print(f"detector: {det}" + (" - real OpenCV HOG person detection on the rendered frames"
                                if det == "hog" else ""))
    print(res.describe())
    return 0 if res.score.ok else 1
