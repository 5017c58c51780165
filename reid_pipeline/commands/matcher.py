"""``reid matcher``: the one writer of a gallery, fed by the workers' durable stream.

Consumes the finished tracklets that ``reid worker`` processes publish (same broker, same
``distributed.prefix``), decides identities exactly as ``reid process`` does, commits them
to the gallery, and only then acknowledges; each decision is published as an event on
``<prefix>.events.<camera>`` (new / known / alert). Messages it refuses (malformed, another
model version) are kept on ``<prefix>.dlq.<reason>`` and counted. One matcher per gallery:
a second site is another prefix and another matcher.

SIGINT/SIGTERM: the batch in hand is committed and acknowledged, then it exits 0; a kill
loses nothing (what was not acknowledged is delivered again and recorded once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from reid_pipeline.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common
    from reid_pipeline.commands.worker import add_broker_options

    p = sub.add_parser(
        "matcher",
        help="consume the workers' tracklets into one gallery (its only writer)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        metavar="URL",
        help="gallery database: SQLAlchemy URL or file (key: gallery.db)",
    )
    p.add_argument(
        "--out",
        dest="cfg__output__out",
        metavar="DIR",
        help="folder for crops of a server database (key: output.out; <out>/crops)",
    )
    add_broker_options(p)
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        metavar="FILE",
        help="ReID checkpoint; the workers must use the same (key: model.checkpoint)",
    )
    p.add_argument(
        "--threshold",
        dest="cfg__match__threshold",
        metavar="P",
        type=float,
        help="match probability threshold (key: match.threshold)",
    )
    p.add_argument(
        "--fetch-batch",
        dest="cfg__distributed__fetch_batch",
        type=int,
        metavar="N",
        help="messages per fetch, at most one transaction (key: distributed.fetch_batch)",
    )
    p.add_argument(
        "--watch",
        dest="cfg__stream__watch",
        type=int,
        nargs="+",
        action="extend",
        metavar="ID",
        help="identities whose events are alerts, besides those flagged (key: stream.watch)",
    )
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.distributed.matcher import MatcherService
    from reid_pipeline.pipeline.build import build_matcher, build_model, open_gallery
    from reid_pipeline.pipeline.recorded import check_output_dir
    from reid_pipeline.utils import redact_url, resolve_device

    if not cfg.gallery.db:
        from reid_pipeline.errors import ConfigError

        raise ConfigError("reid matcher needs the gallery database: --db URL (key: gallery.db)")
    dev = resolve_device(cfg.device)
    model = build_model(cfg, dev)  # a wrong checkpoint fails before the database is touched
    out = cfg.output.out
    if "://" in cfg.gallery.db and not cfg.gallery.db.startswith("sqlite"):
        check_output_dir(out)
    gallery = open_gallery(cfg, out, cfg.gallery.db)
    try:
        _, matcher = build_matcher(cfg, model, gallery, dev)
        service = MatcherService(
            cfg, gallery, matcher, str(getattr(model, "model_version", "") or ""), on_event=_show
        )
        print(f"gallery: {redact_url(cfg.gallery.db)}", flush=True)
        print(f"broker: {redact_url(cfg.distributed.broker)}, prefix {cfg.distributed.prefix}")
        stats = asyncio.run(_serve(service))
    finally:
        gallery.close()
    print(f"matcher stopped: {stats.describe()}", flush=True)
    return 0


async def _serve(service: Any) -> Any:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop.set)
    try:
        return await service.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _show(event: dict[str, Any]) -> None:
    log.debug("event %s", json.dumps(event, sort_keys=True))
