"""``reid gallery ACTION``: look at and manage the identity gallery.

    uv run reid gallery identities --db runs/day1/reid.db     # who was seen, where, when

Structure: ``reid gallery`` has one sub-parser per action. Each action is a function
``add_<name>(actions)`` in ``ACTIONS`` that adds its parser (with ``--db`` and the common
options) and sets ``func``. The management actions (merge, split, rename, delete, purge,
export) live in ``reid_pipeline.commands.gallery_manage`` (``register_manage(actions)``);
the options both share (``--db``, ``--crops-dir``) and opening the gallery are in
``reid_pipeline.commands.gallery_common``, so neither module imports the other's. Every
flag maps onto a config key (``--db`` is ``gallery.db``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from reid_pipeline.commands.gallery_common import add_db, open_gallery
from reid_pipeline.commands.gallery_manage import register_manage
from reid_pipeline.config import Config

EPOCH_CUTOFF = 1e9  # timestamps above this are epoch seconds (live streams), below: offsets


def format_time(t: float | None) -> str:
    """Media time for people: epoch seconds as UTC date-time, offsets as h:mm:ss.s."""
    if t is None:
        return "-"
    if t >= EPOCH_CUTOFF:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    h, rest = divmod(float(t), 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}"


def identities_table(rows: list[Any]) -> str:
    """Plain-text table of ``IdentitySummary`` rows."""
    head = ["id", "name", "cameras", "first seen", "last seen", "sightings", "tracklets"]
    body = [
        [
            str(r.id),
            (r.name or "") + (" [watch]" if r.flagged else ""),
            ",".join(r.cameras) or "-",
            format_time(r.first_seen),
            format_time(r.last_seen),
            str(r.sightings),
            str(r.tracklets),
        ]
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    right = {0, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def run_identities(args: argparse.Namespace, cfg: Config) -> int:
    with open_gallery(cfg) as g:
        rows = g.identities()
        shown = g.shown
    print(identities_table(rows))
    cams = sorted({c for r in rows for c in r.cameras})
    multi = sum(1 for r in rows if len(r.cameras) > 1)
    print(
        f"\n{len(rows)} identities in {shown}; {len(cams)} cameras; "
        f"{multi} seen in more than one camera"
    )
    return 0


def add_identities(actions: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = actions.add_parser(
        "identities",
        help="who was seen, where and when",
        description="List every identity: cameras, first/last seen, "
        "number of sightings and tracklets.",
    )
    add_db(p)
    add_common(p)
    p.set_defaults(func=run_identities)


ACTIONS: list[Callable[[Any], None]] = [add_identities]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gallery",
        help="inspect and manage the identity gallery",
        description="Inspect and manage the identity gallery, e.g.\n"
        "  reid gallery identities --db runs/day1/reid.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="gallery_action", metavar="ACTION")
    for add in ACTIONS:
        add(actions)
    register_manage(actions)

    def _usage(args: argparse.Namespace, cfg: Config) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_usage)
