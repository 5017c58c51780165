"""The matcher: the only writer of one gallery, fed by the durable stream.

Loop: fetch up to ``fetch_batch`` messages (a durable pull consumer) -> validate each
(``wire.parse``/``decode``; a malformed one, one of another model version, or one delivered
``max_deliver`` times without a commit goes to the dead-letter subject, counted, and is
acknowledged there) -> leave out tracklets the gallery holds already (a redelivery after a
crash: ``Gallery.recorded_tracklets``) -> **one** ``Back.commit`` for the rest, the very
code of the single-process pipeline (one-place rule, global assignment over the batch, one
transaction) -> publish each decision as an event -> only then acknowledge. A crash at any
point loses nothing (unacknowledged messages are redelivered) and records nothing twice
(a tracklet is unique per source and track id).

Failures: the database away -> the same batch is retried (messages kept in progress) until
it is back; a batch the gallery refuses for its content -> committed message by message,
and the one refused goes to the dead letters. Nothing a message holds can stop the loop.

``begin`` requests are answered here too: first every message of that camera still in the
stream is committed (the stream is a work queue: what is in it is not acknowledged yet),
then ``Back.begin`` says where the source resumes - so a restarted worker continues from
exactly what the gallery holds.

Gallery work runs in one thread (``_db``), one call at a time: the single writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reid_pipeline.config import Config
from reid_pipeline.distributed.broker import Names, connect, crops_store, ensure_streams, pending
from reid_pipeline.distributed.wire import BeginRequest, Envelope, WireError, decode, parse
from reid_pipeline.errors import DatabaseError, ReidError
from reid_pipeline.pipeline.engine import (
    Back,
    CameraStart,
    Decision,
    FinishedBatch,
    FinishedTracklet,
    SourceProgress,
)
from reid_pipeline.pipeline.live import Percentiles, WatchList
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

DRAIN_REPLY_S = 10.0  # a begin waits this long for its camera's backlog, then says "retry"


@dataclass(frozen=True)
class RemoteSource:
    """A worker's source as ``Back.begin`` needs it (``engine.SourceInfo``)."""

    camera: str
    uri: str
    fps: float
    frame_count: int | None
    fp: str

    def fingerprint(self) -> str:
        return self.fp


@dataclass
class MatcherStats:
    """What the matcher did; the ``<prefix>.stats`` request answers with ``to_dict``."""

    started: float = field(default_factory=time.time)
    messages: int = 0  # committed (or found committed) and acknowledged
    commits: int = 0  # gallery transactions
    tracklets: int = 0  # recorded and decided
    duplicates: int = 0  # redelivered, found recorded already: not recorded again
    events: int = 0
    events_failed: int = 0
    begins: int = 0
    db_retries: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    latency: Percentiles = field(default_factory=Percentiles)  # handed to the worker's back
    # end -> committed, seconds
    commit_s: Percentiles = field(default_factory=Percentiles)  # one transaction

    def to_dict(self) -> dict[str, Any]:
        up = time.time() - self.started
        return {
            "uptime_s": round(up, 3),
            "messages": self.messages,
            "commits": self.commits,
            "tracklets": self.tracklets,
            "tracklets_per_s": round(self.tracklets / up, 3) if up > 0 else 0.0,
            "duplicates": self.duplicates,
            "events": self.events,
            "events_failed": self.events_failed,
            "begins": self.begins,
            "db_retries": self.db_retries,
            "dead_letters": dict(self.dead_letters),
            "dead_letters_total": sum(self.dead_letters.values()),
            "latency_s": self.latency.summary(),
            "commit_s": self.commit_s.summary(),
        }

    def describe(self) -> str:
        d = self.to_dict()
        lat = d["latency_s"]
        line = (
            f"{d['tracklets']} tracklets committed in {d['commits']} transactions "
            f"({d['tracklets_per_s']:.1f}/s), {d['messages']} messages, "
            f"{d['duplicates']} redelivered duplicates skipped, {d['events']} events, "
            f"{d['dead_letters_total']} dead letters"
        )
        if d["dead_letters"]:
            line += (
                " (" + ", ".join(f"{k}: {v}" for k, v in sorted(d["dead_letters"].items())) + ")"
            )
        if lat["n"]:
            line += (
                f"; latency handed -> committed p50 {lat['p50'] * 1000:.0f} ms, "
                f"p99 {lat['p99'] * 1000:.0f} ms"
            )
        return line


@dataclass
class _Item:
    msg: Any
    env: Envelope
    batch: FinishedBatch


def _transient(e: BaseException) -> bool:
    """A database failure worth retrying (the server is away), not one about the data: the
    driver error behind the gallery's ``DatabaseError`` (SQL stays in ``gallery``)."""
    cause = e.__cause__
    return (
        isinstance(e, DatabaseError)
        and cause is not None
        and type(cause).__module__.startswith("sqlalchemy")
        and type(cause).__name__
        in ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError")
    )


class MatcherService:
    """Consumes the stream into one gallery; see the module docstring.

    ``gallery``, ``matcher``: as ``pipeline.build`` makes them (``open_gallery``,
    ``build_matcher``); ``model_version``: the only version accepted.
    """

    def __init__(
        self,
        cfg: Config,
        gallery: Any,
        matcher: Any,
        model_version: str,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.d = cfg.distributed
        self.names = Names.of(self.d)
        self.gallery = gallery
        self.back = Back(gallery, matcher)
        self.model_version = model_version
        self.on_event = on_event
        self.stats = MatcherStats()
        self.watch = WatchList(cfg.stream.watch, gallery)
        self.known: set[int] = set()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="reid-gallery")
        self._tasks: set[asyncio.Task[Any]] = set()
        self.nc: Any = None
        self.js: Any = None
        self._obs: Any = None
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()  # set once subscribed (tests, the benchmark)

    # ------------------------------------------------------------------ running
    async def _in_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def run(self) -> MatcherStats:
        """Serve until ``stop`` is set; the batch in hand is committed and acknowledged."""
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js import api

        self.known = await self._in_db(self.gallery.identity_ids)
        again = asyncio.Event()  # set on each reconnection: bind the consumer again
        self.nc, self.js = await connect(self.d, "reid-matcher", again.set)
        try:
            await ensure_streams(self.js, self.d)
            self._obs = await crops_store(self.js, self.d)

            async def subscribe() -> Any:
                return await self.js.pull_subscribe(
                    self.names.all_tracklets,
                    durable=self.names.consumer,
                    stream=self.names.stream,
                    config=api.ConsumerConfig(
                        ack_policy=api.AckPolicy.EXPLICIT,
                        ack_wait=self.d.ack_wait_s,
                        max_deliver=-1,
                        max_ack_pending=max(1000, 4 * self.d.fetch_batch),
                    ),
                )

            psub = await subscribe()

            async def resubscribe(old: Any, why: str) -> Any:
                # a broker restarted before its file store was synced may have lost the
                # durable consumer (or the stream); fetches would then time out or fail
                # for ever. Make them again: a consumer made anew redelivers from the
                # stream's start, and tracklets already in the gallery are skipped
                try:
                    await ensure_streams(self.js, self.d)
                    sub = await subscribe()
                except Exception as e:  # noqa: BLE001 - retried on the next round
                    log.debug("subscribing again failed: %s", e)
                    return old
                await _quietly(old.unsubscribe())
                log.info("matcher: bound to consumer %s again (%s)", self.names.consumer, why)
                return sub

            await self.nc.subscribe(self.names.begin, cb=self._on_begin)
            await self.nc.subscribe(self.names.stats, cb=self._on_stats)
            log.info(
                "matcher: consuming %s (stream %s) into gallery %s, model %s",
                self.names.all_tracklets,
                self.names.stream,
                self.gallery.shown,
                self.model_version,
            )
            self.ready.set()
            next_status = time.monotonic() + (self.d.status_every_s or 1e18)
            while not self.stop.is_set():
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.d.status_every_s
                    log.info("matcher: %s", self.stats.describe())
                if again.is_set() and self.nc.is_connected:
                    again.clear()
                    psub = await resubscribe(psub, "the broker reconnected")
                try:
                    msgs = await psub.fetch(self.d.fetch_batch, timeout=self.d.fetch_wait_s)
                except (NatsTimeout, asyncio.TimeoutError):
                    continue
                except Exception as e:  # noqa: BLE001 - a dead connection: retried
                    log.debug("fetch failed: %s", e)
                    await asyncio.sleep(0.5)
                    if self.nc.is_connected:
                        psub = await resubscribe(psub, f"a fetch failed: {type(e).__name__}")
                    continue
                if msgs:
                    await self.handle(msgs)
        finally:
            for t in list(self._tasks):
                t.cancel()
            try:
                await self.nc.close()
            except Exception:
                log.debug("closing the broker connection failed", exc_info=True)
            self._db.shutdown(wait=True)
        return self.stats

    # ------------------------------------------------------------------ one fetch
    async def handle(self, msgs: Sequence[Any]) -> None:
        """Validate, commit (one transaction), publish events, acknowledge."""
        items: list[_Item] = []
        for m in msgs:
            item = await self._validate(m)
            if item is not None:
                items.append(item)
        if not items:
            return
        delay = 0.5
        while True:
            try:
                decided = await self._in_db(self._commit, [i.batch for i in items])
                break
            except Exception as e:  # noqa: BLE001 - sorted below
                if _transient(e):
                    self.stats.db_retries += 1
                    log.warning("gallery %s: %s; retrying in %.1f s", self.gallery.shown, e, delay)
                    for i in items:  # keep them ours while the database is away
                        await _quietly(i.msg.in_progress())
                    if self.stop.is_set():
                        return  # not acknowledged: redelivered to the next matcher
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if len(items) == 1:
                    await self._dead(items[0].msg, "rejected", _why(e))
                    return
                log.warning("a batch of %d messages was refused (%s): one by one", len(items), e)
                for i in items:
                    await self.handle_items([i])
                return
        await self._finish(items, decided)

    async def handle_items(self, items: list[_Item]) -> None:
        """One message alone (isolating a refused one)."""
        while True:
            try:
                decided = await self._in_db(self._commit, [i.batch for i in items])
                break
            except Exception as e:  # noqa: BLE001 - isolated below
                if _transient(e) and not self.stop.is_set():
                    self.stats.db_retries += 1
                    await asyncio.sleep(1.0)
                    continue
                await self._dead(items[0].msg, "rejected", _why(e))
                return
        await self._finish(items, decided)

    async def _validate(self, m: Any) -> _Item | None:
        meta = m.metadata
        if meta.num_delivered > self.d.max_deliver:
            await self._dead(
                m, "undeliverable", f"delivered {meta.num_delivered} times without a commit"
            )
            return None
        try:
            env, body = parse(m.data, self.names.camera_of(m.subject))
        except WireError as e:
            await self._dead(m, "malformed", str(e))
            return None
        if env.model_version != self.model_version:
            await self._dead(
                m,
                "model_version",
                f"model version {env.model_version!r}; this matcher's is {self.model_version!r}",
            )
            return None
        try:
            if body is None:
                body = await self._get_object(env)
            batch = decode(env, body)
        except WireError as e:
            await self._dead(m, "malformed", str(e))
            return None
        return _Item(m, env, batch)

    async def _get_object(self, env: Envelope) -> bytes:
        from nats.js.errors import NotFoundError, ObjectNotFoundError

        try:
            res = await self._obs.get(env.object_name)
        except (ObjectNotFoundError, NotFoundError):
            raise WireError(f"payload object {env.object_name!r} is not in the store") from None
        return bytes(res.data or b"")

    def _commit(self, batches: list[FinishedBatch]) -> list[tuple[Decision, bool, int]]:
        """In the gallery thread: what is new goes through ``Back.commit`` (one transaction);
        what the gallery holds already is answered from it. Returns (decision, redelivered,
        source id) per tracklet."""
        t0 = time.perf_counter()
        tracklets = [ft for b in batches for ft in b.tracklets]
        held = self.gallery.recorded_tracklets(
            (ft.source_id, ft.tracklet.track_id) for ft in tracklets
        )
        fresh: list[FinishedTracklet] = []
        again: list[tuple[Decision, bool, int]] = []
        seen: set[tuple[int, int]] = set()
        for ft in tracklets:
            key = (ft.source_id, ft.tracklet.track_id)
            if key in seen:
                continue
            seen.add(key)
            if key in held:
                tid, ident, score = held[key]
                d = Decision(ft.camera, ft.tracklet.track_id, ident, score, "confirmed", tid)
                again.append((d, True, ft.source_id))
            else:
                fresh.append(ft)
        progress: dict[int, SourceProgress] = {}
        for b in batches:
            for sp in b.progress:
                old = progress.get(sp.source_id)
                progress[sp.source_id] = (
                    sp
                    if old is None
                    else SourceProgress(
                        sp.camera,
                        sp.source_id,
                        max(old.resume_from, sp.resume_from),
                        old.done or sp.done,
                    )
                )
        fresh.sort(key=lambda p: (p.tracklet.first_seen, p.camera))
        batch = FinishedBatch(tuple(fresh), tuple(progress.values()), self.model_version)
        committed = self.back.commit(batch)
        by_key = {(d.camera, d.track): ft.source_id for d, ft in zip(committed.decisions, fresh)}
        self.stats.commits += 1
        self.stats.tracklets += len(committed.decisions)
        self.stats.duplicates += len(again)
        self.stats.commit_s.add(time.perf_counter() - t0)
        return [(d, False, by_key[(d.camera, d.track)]) for d in committed.decisions] + again

    async def _finish(self, items: list[_Item], decided: list[tuple[Decision, bool, int]]) -> None:
        now = time.time()
        handed = {}
        for i in items:
            for ft in i.batch.tracklets:
                handed[(ft.camera, ft.tracklet.track_id)] = i.env.handed_at
        for d, redelivered, _ in decided:
            if not redelivered:
                self.stats.latency.add(max(0.0, now - handed.get((d.camera, d.track), now)))
        await self._events(decided, handed, now)
        for i in items:
            await _quietly(i.msg.ack())
            if i.env.object_name:
                await _quietly(self._obs.delete(i.env.object_name))
        self.stats.messages += len(items)

    async def _events(
        self,
        decided: list[tuple[Decision, bool, int]],
        handed: dict[tuple[str, int], float],
        now: float,
    ) -> None:
        """Each decision that names an identity, as an event on ``<prefix>.events.<camera>``
        (de-duplicated by source and track: a redelivery re-sends, the stream keeps one)."""
        pubs = []
        for d, redelivered, source_id in decided:
            if d.identity is None:
                continue
            ident = int(d.identity)
            new = ident not in self.known
            self.known.add(ident)
            ev = {
                "timestamp": now,
                "camera": d.camera,
                "identity": ident,
                "score": None if d.score is None else round(float(d.score), 4),
                "status": "new" if new else "known",
                "kind": d.kind,
                "alert": ident in self.watch,
                "track": d.track,
                "tracklet_id": d.tracklet_id,
                "source_id": source_id,
                "redelivered": redelivered,
                "latency_s": round(max(0.0, now - handed.get((d.camera, d.track), now)), 4),
            }
            if self.on_event is not None:
                self.on_event(ev)
            if ev["alert"]:
                log.warning("ALERT: watched identity %s seen by camera %s", ident, d.camera)
            pubs.append(
                self.js.publish(
                    self.names.events(d.camera),
                    json.dumps(ev).encode(),
                    timeout=10.0,
                    headers={"Nats-Msg-Id": f"{source_id}.{d.track}"},
                )
            )
        if not pubs:
            return
        results = await asyncio.gather(*pubs, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.stats.events += len(results) - len(failed)
        if failed:
            self.stats.events_failed += len(failed)
            log.warning("%d decision events could not be published: %s", len(failed), failed[0])

    async def _dead(self, m: Any, reason: str, why: str) -> None:
        """Keep a refused message aside (``<prefix>.dlq.<reason>``), count it, acknowledge it
        - only once the dead-letter stream has it: nothing is dropped silently."""
        seq = m.metadata.sequence.stream
        headers = {
            "Nats-Msg-Id": f"dlq.{self.names.stream}.{seq}",
            "Reid-Reason": reason,
            "Reid-Error": why[:1000],
            "Reid-Subject": m.subject,
            "Reid-Stream-Seq": str(seq),
        }
        try:
            await self.js.publish(self.names.dlq(reason), m.data, timeout=10.0, headers=headers)
        except Exception as e:  # noqa: BLE001 - any failure: retried
            log.error("dead letter %s could not be stored (%s): left in the stream", seq, e)
            await _quietly(m.nak(delay=5.0))
            return
        self.stats.dead_letters[reason] += 1
        log.warning("message %s on %s refused (%s): %s", seq, m.subject, reason, why)
        await _quietly(m.ack())

    # ------------------------------------------------------------------ requests
    async def _on_begin(self, msg: Any) -> None:
        task = asyncio.create_task(self._begin(msg))  # a long drain must not hold the others
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _begin(self, msg: Any) -> None:
        try:
            req = BeginRequest.from_json(msg.data)
        except WireError as e:
            await _reply(msg, {"ok": False, "error": str(e)})
            return
        if req.model_version != self.model_version:
            await _reply(
                msg,
                {
                    "ok": False,
                    "error": (
                        f"this worker's model version is {req.model_version!r}, the matcher's "
                        f"{self.model_version!r}: both must use the same checkpoint"
                    ),
                },
            )
            return
        subject = self.names.tracklets(req.camera)
        deadline = time.monotonic() + DRAIN_REPLY_S
        try:
            while (left := await pending(self.js, self.names.stream, subject)) > 0:
                if time.monotonic() >= deadline:
                    await _reply(
                        msg,
                        {
                            "ok": False,
                            "retry": True,
                            "error": f"{left} message(s) of camera {req.camera} still to commit",
                        },
                    )
                    return
                await asyncio.sleep(0.05)
            src = RemoteSource(req.camera, req.uri, req.fps, req.frame_count, req.fingerprint)
            st: CameraStart = await self._in_db(self.back.begin, src)
        except ReidError as e:
            await _reply(msg, {"ok": False, "retry": _transient(e), "error": redact_url(str(e))})
            return
        except Exception as e:  # noqa: BLE001 - nothing a message holds stops the loop
            await _reply(msg, {"ok": False, "retry": True, "error": redact_url(str(e))})
            return
        self.stats.begins += 1
        log.info(
            "camera %s: source %d resumes at frame %d%s",
            st.camera,
            st.source_id,
            st.resume_from,
            " (done)" if st.done else "",
        )
        await _reply(
            msg,
            {
                "ok": True,
                "camera": st.camera,
                "uri": st.uri,
                "source_id": st.source_id,
                "resume_from": st.resume_from,
                "next_track_id": st.next_track_id,
                "done": st.done,
            },
        )

    async def _on_stats(self, msg: Any) -> None:
        await _reply(msg, self.stats.to_dict())


async def _reply(msg: Any, body: dict[str, Any]) -> None:
    await _quietly(msg.respond(json.dumps(body).encode()))


async def _quietly(aw: Any) -> None:
    """Await a broker call whose failure changes nothing (an ack lost is a redelivery)."""
    try:
        await aw
    except Exception as e:  # noqa: BLE001 - a lost ack is a redelivery
        log.debug("broker call failed: %s", e)


def _why(e: BaseException) -> str:
    return redact_url(f"{type(e).__name__}: {e}")


__all__ = ["MatcherService", "MatcherStats", "RemoteSource"]
