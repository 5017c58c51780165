"""``reid bench``: our stages beside the baselines a user would otherwise run, on this device.

    uv run reid bench                       # small sizes: seconds, runs on a CPU (CI)
    uv run reid bench --size full --json bench.json   # the H100 table of docs/benchmarks.md
    uv run reid bench --stages scoring,embedder --device cuda:0

Prints a table (our figure, the baseline's, ours / baseline) and the numerical checks that
tie each fast path to its reference; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common, add_options
    from reid_pipeline.commands.options import BenchOptions

    p = sub.add_parser(
        "bench",
        help="benchmark every stage against its baseline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--size",
        dest="cfg__bench__size",
        choices=["small", "full"],
        help="small: CPU-friendly, seconds; full: H100-sized (key: bench.size)",
    )
    p.add_argument(
        "--stages",
        dest="cfg__bench__stages",
        metavar="LIST",
        help="comma-separated subset of scoring,embedder,detector,end_to_end (key: bench.stages)",
    )
    p.add_argument(
        "--json",
        dest="cfg__bench__json",
        metavar="FILE",
        help="also write the results as JSON (key: bench.json)",
    )
    add_common(p)
    add_options(p, BenchOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.bench.speed import format_table, run_bench
    from reid_pipeline.commands.common import options_from_args
    from reid_pipeline.commands.options import BenchOptions
    from reid_pipeline.errors import OutputError

    opts = options_from_args(args, BenchOptions)
    res = run_bench(cfg, size=opts.size, stages=tuple(opts.stages))
    print(format_table(res))
    if opts.json:
        out = Path(opts.json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res.to_dict(), indent=1))
        except OSError as e:
            raise OutputError(f"cannot write bench results to {str(out)!r}: {e.strerror}") from None
    failed = [k for k, v in res.checks.items() if k.endswith("_ok") and v is False]
    if failed:
        print(f"bench checks failed: {', '.join(failed)}")
        return 1
    return 0
