"""``reid serve``: the operator console over a gallery: identities, search by photo, the
watch list and management, in a browser and as an HTTP API (schema at /openapi.json).

    uv run reid serve --db runs/day1/reid.db [--host 127.0.0.1 --port 8080]

It listens on 127.0.0.1 unless told otherwise; any other address needs an access token
(--token-file FILE, or serve.token), which every request then carries (the page asks for it
once). Live cameras and alerts come with `reid stream ... --serve HOST:PORT`, which runs
the same console beside the live loop.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from reid_pipeline.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = sub.add_parser(
        "serve",
        help="the operator console (web page and HTTP API) over a gallery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        metavar="PATH_OR_URL",
        help="gallery database: file or SQLAlchemy URL (key: gallery.db; "
        "default <output.out>/reid.db)",
    )
    p.add_argument(
        "--host",
        dest="cfg__serve__host",
        metavar="ADDRESS",
        help="address to listen on (key: serve.host; default 127.0.0.1; any other needs a token)",
    )
    p.add_argument("--port", dest="cfg__serve__port", type=int, metavar="N", help="key: serve.port")
    p.add_argument(
        "--token",
        dest="cfg__serve__token",
        metavar="TOKEN",
        help="access token (key: serve.token; other local users can see a flag in `ps`: "
        "prefer --token-file)",
    )
    p.add_argument(
        "--token-file",
        dest="cfg__serve__token_file",
        metavar="FILE",
        help="file whose first line is the access token (key: serve.token_file)",
    )
    p.add_argument(
        "--videos",
        dest="cfg__serve__videos",
        metavar="DIR",
        help="folder of annotated videos <camera>.webm (key: serve.videos; "
        "default <db folder>/videos)",
    )
    p.add_argument(
        "--crops-dir",
        dest="cfg__gallery__crops_dir",
        metavar="DIR",
        help="where the gallery's crop JPEGs are (key: gallery.crops_dir; default: "
        "recorded in the gallery)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        help="ReID checkpoint the gallery was built with, for the search (key: model.checkpoint)",
    )
    p.add_argument(
        "--detector",
        dest="cfg__detector__kind",
        help="person detector for searched photos: auto, yolo or hog (key: detector.kind)",
    )
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.gallery.manage import open_existing
    from reid_pipeline.pipeline.build import default_db_url
    from reid_pipeline.serve.app import create_app
    from reid_pipeline.serve.server import serve_forever
    from reid_pipeline.utils import redact_url

    db = default_db_url(cfg)
    host, port = cfg.serve.host, cfg.serve.port
    with open_existing(db, cfg) as gallery:
        app = create_app(gallery, cfg)  # refuses a public address without a token
        shown = f"[{host}]" if ":" in host else host
        print(f"gallery: {redact_url(db)}\nconsole: http://{shown}:{port}/", flush=True)
        serve_forever(app, host, port, cfg.log_level)
    print("console stopped", flush=True)
    return 0
