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

from reid_pipeline.commands.options import DemoOptions
from reid_pipeline.config import COMMAND_SECTIONS, Config, load_config, read_yaml


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common, add_options
    from reid_pipeline.commands.process import add_process_options

    p = sub.add_parser(
        "demo",
        help="offline demo: generated two-camera scene, end to end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--people",
        dest="cfg__demo__people",
        type=int,
        metavar="N",
        help="people in the generated scene (key: demo.people)",
    )
    p.add_argument(
        "--seed", dest="cfg__demo__seed", type=int, metavar="N", help="scene seed (key: demo.seed)"
    )
    add_process_options(p)
    add_common(p)
    add_options(p, DemoOptions)
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
    from reid_pipeline.commands.common import flag_overrides, split_overrides
    from reid_pipeline.demo.scenario import demo_config_overrides
    from reid_pipeline.errors import ConfigError

    merged: dict[str, Any] = {"output.out": "runs/demo", **demo_config_overrides()}
    if getattr(args, "config", None):
        load_config(args.config)  # validates the file, names a bad key
        try:
            with open(args.config) as fh:
                merged.update(
                    {
                        k: v
                        for k, v in _flatten(read_yaml(fh) or {}).items()
                        if k.split(".", 1)[0] not in COMMAND_SECTIONS
                    }
                )
        except OSError as e:
            raise ConfigError(f"config file {args.config!r}: {e.strerror or e}") from None
    merged.update(split_overrides(flag_overrides(args), DemoOptions)[0])
    return load_config(None, merged)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.commands.common import options_from_args
    from reid_pipeline.demo.scenario import run_demo

    cfg = demo_config(args)
    opts = options_from_args(args, DemoOptions)
    res = run_demo(cfg, people=opts.people, seed=opts.seed)
    det = cfg.detector.kind
    print(f"demo scene: {res.scene_dir} (generated; ground truth in gt.csv)")
    print(
        f"detector: {det}"
        + (" - real OpenCV HOG person detection on the rendered frames" if det == "hog" else "")
    )
    print(res.describe())
    return 0 if res.score.ok else 1
