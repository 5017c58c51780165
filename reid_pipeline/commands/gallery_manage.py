"""The management subcommands of ``reid gallery``: merge, split, rename, delete, purge, export.

``reid_pipeline/commands/gallery.py`` owns the ``gallery`` command and calls
``register_manage(subparsers)`` to add these (the shared ``--db`` options come from
``commands/gallery_common.py``); the work is done by
``reid_pipeline.gallery.manage.GalleryManager`` (one transaction per change, total erasure, logs
without personal content). Destructive commands ask for confirmation on a terminal and
refuse to run unattended without ``--yes`` (key ``manage.yes``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from reid_pipeline.commands.options import ManageOptions
from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError, InputError


def _db(p: argparse.ArgumentParser) -> None:
    from reid_pipeline.commands.common import add_common, add_options
    from reid_pipeline.commands.gallery_common import add_db

    add_db(p)
    add_common(p)
    add_options(p, ManageOptions)


def _opts(args: argparse.Namespace) -> ManageOptions:
    from reid_pipeline.commands.common import options_from_args

    return options_from_args(args, ManageOptions)


def register_manage(gsub: Any) -> None:
    """Add the management subcommands to the ``reid gallery`` subparsers."""
    p = gsub.add_parser("merge", help="merge identity B into A (same person)")
    p.add_argument("a", type=int, help="identity kept")
    p.add_argument("b", type=int, help="identity merged into A and removed")
    p.add_argument(
        "--force",
        dest="cfg__manage__force",
        action="store_const",
        const=True,
        help="merge even if both were seen at the same time on one camera (key: manage.force)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        help="model to re-embed crops with if needed (key: model.checkpoint)",
    )
    _db(p)
    p.set_defaults(func=_run(_merge))

    p = gsub.add_parser("split", help="move some tracklets of an identity into a new one")
    p.add_argument("identity", type=int)
    p.add_argument(
        "--tracklets",
        type=int,
        nargs="+",
        required=True,
        metavar="ID",
        help="tracklet ids to move (see `reid gallery export --identity N`)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        help="model to re-embed crops with if needed (key: model.checkpoint)",
    )
    _db(p)
    p.set_defaults(func=_run(_split))

    p = gsub.add_parser("rename", help="name an identity (empty name clears it)")
    p.add_argument("identity", type=int)
    p.add_argument("name")
    _db(p)
    p.set_defaults(func=_run(_rename))

    p = gsub.add_parser("delete", help="erase one identity completely (rows, crops, vectors)")
    p.add_argument("identity", type=int)
    p.add_argument(
        "--yes",
        dest="cfg__manage__yes",
        action="store_const",
        const=True,
        help="do not ask for confirmation (key: manage.yes)",
    )
    _db(p)
    p.set_defaults(func=_run(_delete))

    p = gsub.add_parser("purge", help="erase everything stored before a given age")
    p.add_argument(
        "--older-than",
        dest="cfg__manage__older_than",
        metavar="AGE",
        help="e.g. 30d, 12h, 2w (key: manage.older_than; default gallery.retention_days)",
    )
    p.add_argument(
        "--yes",
        dest="cfg__manage__yes",
        action="store_const",
        const=True,
        help="do not ask for confirmation (key: manage.yes)",
    )
    _db(p)
    p.set_defaults(func=_run(_purge))

    p = gsub.add_parser("export", help="all sightings with identity and camera, CSV or JSONL")
    p.add_argument(
        "--format",
        dest="cfg__manage__export_format",
        choices=["csv", "jsonl"],
        help="key: manage.export_format",
    )
    p.add_argument(
        "--out",
        dest="cfg__manage__export_out",
        metavar="FILE",
        help="key: manage.export_out; default: standard output",
    )
    p.add_argument(
        "--identity",
        dest="cfg__manage__export_identity",
        type=int,
        metavar="ID",
        help="one identity only (key: manage.export_identity)",
    )
    _db(p)
    p.set_defaults(func=_run(_export))


Handler = Callable[[Any, argparse.Namespace, Config], int]


def _run(handler: Handler) -> Callable[[argparse.Namespace, Config], int]:
    """Open the (existing) gallery, build the manager, call ``handler``."""

    def run(args: argparse.Namespace, cfg: Config) -> int:
        from reid_pipeline.commands.gallery_common import open_gallery
        from reid_pipeline.gallery.manage import GalleryManager

        with open_gallery(cfg) as gallery:
            mgr = GalleryManager(gallery, exemplars=cfg.match.exemplars, embed=_lazy_embed(cfg))
            return handler(mgr, args, cfg)

    return run


def _lazy_embed(cfg: Config) -> Callable[[list[Any]], tuple[Any, str]]:
    """Load the ReID model only if a split/merge really has to re-embed crops."""
    state: dict[str, Any] = {}

    def embed(images: list[Any]) -> tuple[Any, str]:
        if "e" not in state:
            from reid_pipeline.pipeline.build import build_embedder, build_model
            from reid_pipeline.utils import resolve_device

            device = resolve_device(cfg.device)
            model = build_model(cfg, device)
            state["e"] = build_embedder(cfg, model, device)
            state["v"] = model.model_version
        return state["e"].embed_crops(images).float().cpu().numpy(), state["v"]

    return embed


def _confirm(opts: ManageOptions, question: str) -> None:
    if opts.yes:
        return
    if not sys.stdin.isatty():
        raise InputError(f"{question}: refusing without confirmation; pass --yes")
    answer = input(f"{question}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise InputError("cancelled: nothing was changed")


def _merge(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    res = mgr.merge(args.a, args.b, force=_opts(args).force)
    print(f"merged identity {args.b} into {args.a} ({res.summary()})")
    return 0


def _split(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    res = mgr.split(args.identity, args.tracklets)
    print(
        f"new identity {res.identity} from {len(set(args.tracklets))} tracklet(s) of "
        f"identity {args.identity}"
    )
    return 0


def _rename(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    mgr.rename(args.identity, args.name)
    print(f"identity {args.identity} renamed")
    return 0


def _delete(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.errors import NotFoundError

    summary = {i.id: i for i in mgr.g.identities()}.get(args.identity)
    if summary is None:
        raise NotFoundError(f"identity {args.identity} does not exist in the gallery")
    _confirm(
        _opts(args),
        f"erase identity {args.identity} completely ({summary.tracklets} "
        f"tracklet(s), {summary.sightings} sighting(s), crops and vectors)",
    )
    res = mgr.delete(args.identity)
    print(f"deleted identity {args.identity} ({res.summary()})")
    return 0


def _purge(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.gallery.manage import parse_age

    opts = _opts(args)
    if opts.older_than:
        age = parse_age(opts.older_than)
    elif cfg.gallery.retention_days > 0:
        age = parse_age(f"{cfg.gallery.retention_days}d")
    else:
        raise ConfigError(
            "config key 'manage.older_than': give an age (--older-than 30d) or "
            "set gallery.retention_days"
        )
    _confirm(opts, f"erase everything stored more than {age} ago")
    res = mgr.purge(age)
    print(f"purged data older than {age} ({res.summary()})")
    return 0


def _export(mgr: Any, args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.errors import OutputError

    m = _opts(args)
    ident = m.export_identity or None
    if not m.export_out:
        mgr.export(sys.stdout, m.export_format, ident)
        return 0
    try:
        with open(m.export_out, "w", encoding="utf-8", newline="") as fh:
            n = mgr.export(fh, m.export_format, ident)
    except OSError as e:
        raise OutputError(f"export file {m.export_out!r}: {e.strerror or e}") from None
    print(f"exported {n} sighting rows to {m.export_out}", file=sys.stderr)
    return 0
