"""The broker side both halves share: names, connecting, the streams and their limits.

One gallery = one subject prefix (``distributed.prefix``). Under it:

* ``<prefix>.tracklets.<camera>`` - stream ``<PREFIX>_TRACKLETS``, a **work queue**: a
  message stays until the matcher acknowledges it (after its commit), then it is gone, so
  the stream holds exactly the backlog. ``max_backlog`` caps it with *discard new*: a full
  stream refuses publishes and the workers wait - a slow matcher slows the workers and
  nothing is lost. Re-sent messages (a publish whose ack was lost) are stored once
  (``Nats-Msg-Id``, ``duplicate_window_s``).
* ``<prefix>.begin`` - request/reply: a worker asks where a source resumes; the matcher
  (the gallery's owner) answers with the ``CameraStart``.
* ``<prefix>.events.<camera>`` - stream ``<PREFIX>_EVENTS``: each committed decision.
* ``<prefix>.dlq.<reason>`` - stream ``<PREFIX>_DLQ``: refused messages, kept as they came.
* ``<prefix>.stats`` - request/reply: the matcher's counters.
* object store ``<PREFIX>_CROPS``: payloads over ``inline_max_bytes`` (crops of big
  tracklets), one object per message, deleted after the commit (a TTL removes orphans).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reid_pipeline.config.distributed import DistributedConfig
from reid_pipeline.distributed.wire import camera_token
from reid_pipeline.errors import ReidError
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


class BrokerError(ReidError):
    """The message broker is unreachable, lacks JetStream, or a request to it failed."""


@dataclass(frozen=True)
class Names:
    """Every subject and JetStream name of one gallery's distributed mode."""

    prefix: str
    stream: str
    consumer: str
    events_stream: str
    dlq_stream: str
    crops_bucket: str

    @classmethod
    def of(cls, d: DistributedConfig) -> Names:
        base = d.prefix.upper().replace(".", "_").replace("-", "_")
        return cls(
            d.prefix,
            d.stream or f"{base}_TRACKLETS",
            d.consumer,
            d.events_stream or f"{base}_EVENTS",
            d.dlq_stream or f"{base}_DLQ",
            d.crops_bucket or f"{base}_CROPS",
        )

    def tracklets(self, camera: str) -> str:
        return f"{self.prefix}.tracklets.{camera_token(camera)}"

    @property
    def all_tracklets(self) -> str:
        return f"{self.prefix}.tracklets.*"

    @property
    def begin(self) -> str:
        return f"{self.prefix}.begin"

    @property
    def stats(self) -> str:
        return f"{self.prefix}.stats"

    def events(self, camera: str) -> str:
        return f"{self.prefix}.events.{camera_token(camera)}"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.events.*"

    def dlq(self, reason: str) -> str:
        return f"{self.prefix}.dlq.{reason}"

    @property
    def all_dlq(self) -> str:
        return f"{self.prefix}.dlq.*"

    def camera_of(self, subject: str) -> str:
        """The camera token of a tracklets subject."""
        return subject.rsplit(".", 1)[-1]


async def _quiet(_e: Exception) -> None:
    return None


async def connect(
    d: DistributedConfig, name: str, reconnected: Callable[[], None] | None = None
) -> Any:
    """A connection that reconnects for ever once made (a broker restart is survived);
    an unreachable broker at the start is one ``BrokerError`` naming it (redacted).
    ``reconnected`` is called after each reconnection."""
    import nats

    shown = redact_url(d.broker)
    errors: list[BaseException] = []

    async def remember(e: Exception) -> None:
        errors.append(e)

    try:  # a probe that gives up at once (nats-py retries an initial connect otherwise)
        probe = await asyncio.wait_for(
            nats.connect(
                d.broker,
                name=f"{name}-probe",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                connect_timeout=d.connect_timeout_s,
                error_cb=remember,
            ),
            d.connect_timeout_s * 2 + 1,
        )
    except (Exception, asyncio.TimeoutError) as e:  # noqa: BLE001 - any failure: unreachable
        why = errors[-1] if errors else e
        raise BrokerError(
            f"message broker {shown} is unreachable: {redact_url(str(why) or type(why).__name__)}"
        ) from None
    await probe.close()

    async def on_error(e: Exception) -> None:
        log.debug("broker %s: %s", shown, redact_url(str(e) or type(e).__name__))

    holder: list[Any] = []

    async def on_disconnect() -> None:
        if holder and not (holder[0].is_closed or holder[0].is_draining):
            log.warning("broker %s: disconnected, reconnecting", shown)

    async def on_reconnect() -> None:
        log.warning("broker %s: reconnected", shown)
        if reconnected is not None:
            reconnected()

    nc = await nats.connect(
        d.broker,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=d.connect_timeout_s,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
    )
    holder.append(nc)
    js = nc.jetstream(timeout=10.0)
    try:
        await js.account_info()
    except Exception as e:  # noqa: BLE001 - no JetStream
        await nc.close()
        raise BrokerError(
            f"message broker {shown} has no JetStream ({type(e).__name__}): "
            "start nats-server with -js"
        ) from None
    return nc, js


async def ensure_streams(js: Any, d: DistributedConfig) -> Names:
    """Create (or bring up to date) the streams and the object store of ``d``'s names."""
    from nats.js import api

    n = Names.of(d)
    configs = [
        api.StreamConfig(
            name=n.stream,
            subjects=[n.all_tracklets],
            retention=api.RetentionPolicy.WORK_QUEUE,
            discard=api.DiscardPolicy.NEW,
            max_msgs=d.max_backlog or -1,
            storage=api.StorageType.FILE,
            duplicate_window=d.duplicate_window_s,
        ),
        api.StreamConfig(
            name=n.events_stream,
            subjects=[n.all_events],
            retention=api.RetentionPolicy.LIMITS,
            max_age=d.events_max_age_s,
            storage=api.StorageType.FILE,
            duplicate_window=min(120.0, d.events_max_age_s),
        ),
        api.StreamConfig(
            name=n.dlq_stream,
            subjects=[n.all_dlq],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
        ),
    ]
    for cfg in configs:
        await _add_or_update(js, cfg)
    await crops_store(js, d, create=True)
    return n


async def _add_or_update(js: Any, cfg: Any) -> None:
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(cfg.name)
    except NotFoundError:
        await js.add_stream(cfg)
        return
    try:
        await js.update_stream(cfg)
    except Exception as e:  # noqa: BLE001 - kept as it is
        log.warning("stream %s kept as it is (%s)", cfg.name, e)


async def crops_store(js: Any, d: DistributedConfig, *, create: bool = False) -> Any:
    """The object store for big payloads (created by the matcher)."""
    from nats.js import api
    from nats.js.errors import BucketNotFoundError

    n = Names.of(d)
    try:
        return await js.object_store(n.crops_bucket)
    except BucketNotFoundError:
        if not create:
            raise
    return await js.create_object_store(
        n.crops_bucket,
        config=api.ObjectStoreConfig(ttl=d.crops_max_age_s, storage=api.StorageType.FILE),
    )


async def pending(js: Any, stream: str, subject: str) -> int:
    """Messages of ``subject`` still in the work-queue stream (not yet acknowledged)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    subjects = info.state.subjects or {}
    return int(subjects.get(subject, 0))


__all__ = ["BrokerError", "Names", "connect", "crops_store", "ensure_streams", "pending"]
