"""The distributed mode (``distributed``): camera workers, a durable stream, one matcher.

``reid worker`` publishes each finished tracklet to a NATS JetStream stream; ``reid matcher``
(the only writer of one gallery) consumes, decides and commits. Every name below is what
both sides must agree on; one gallery = one ``prefix`` / ``stream`` (a second site uses
others, and its own matcher).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reid_pipeline.config.base import check

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class DistributedConfig:
    broker: str = "nats://127.0.0.1:4222"  # NATS server URL (credentials are never shown)
    # subjects: <prefix>.tracklets.<camera>, <prefix>.begin, <prefix>.events.<camera>,
    # <prefix>.dlq.<reason>, <prefix>.stats
    prefix: str = "reid"
    # JetStream names; empty: derived from the prefix (reid -> REID_TRACKLETS, ...)
    stream: str = ""  # the durable stream of finished tracklets (a work queue)
    consumer: str = "matcher"  # the matcher's durable pull consumer
    events_stream: str = ""  # decisions (new / known / alert), kept events_max_age_s
    dlq_stream: str = ""  # refused messages (dead letters), kept for an operator
    crops_bucket: str = ""  # object store for payloads too big to send inline
    fetch_batch: int = 64  # matcher: messages per fetch = at most one gallery transaction
    fetch_wait_s: float = 0.5  # matcher: how long a fetch waits for the first message
    max_inflight: int = 8  # worker: unacknowledged publishes before commit() blocks
    # stream limit: past this many waiting messages the broker refuses new ones and the
    # workers wait (back-pressure from a slow matcher, without losing anything); 0: no limit
    max_backlog: int = 100_000
    ack_wait_s: float = 30.0  # a delivered, unacknowledged message is redelivered after this
    max_deliver: int = 5  # deliveries of one message without a commit before dead-lettering
    publish_timeout_s: float = 120.0  # worker: how long one publish is retried (broker down)
    begin_timeout_s: float = 300.0  # worker: how long to wait for the matcher's answer
    connect_timeout_s: float = 5.0
    inline_max_bytes: int = 256 * 1024  # bigger payloads (crops, vectors) go to the object store
    duplicate_window_s: float = 600.0  # broker-side de-duplication of re-sent messages
    events_max_age_s: float = 86_400.0
    crops_max_age_s: float = 7 * 86_400.0  # object store TTL (orphans of crashes go too)
    status_every_s: float = 10.0  # matcher: seconds between status log lines (0: none)

    def validate(self, p: str) -> None:
        check(
            self.broker.startswith(("nats://", "tls://")),
            f"{p}.broker",
            "must be a NATS URL, nats://host:4222 (or tls://...)",
        )
        check(
            all(_TOKEN.fullmatch(part) for part in self.prefix.split(".")),
            f"{p}.prefix",
            f"must be NATS subject tokens (letters, digits, - and _), got {self.prefix!r}",
        )
        for key in ("stream", "consumer", "events_stream", "dlq_stream", "crops_bucket"):
            value = getattr(self, key)
            check(
                (key != "consumer" and not value) or _TOKEN.fullmatch(value) is not None,
                f"{p}.{key}",
                f"must be letters, digits, - and _, got {value!r}",
            )
        named = [n for n in (self.stream, self.events_stream, self.dlq_stream) if n]
        check(
            len(set(named)) == len(named),
            f"{p}.stream",
            "stream, events_stream and dlq_stream must be three different names",
        )
        check(1 <= self.fetch_batch <= 10_000, f"{p}.fetch_batch", "must be in [1, 10000]")
        check(self.fetch_wait_s > 0, f"{p}.fetch_wait_s", "must be > 0")
        check(self.max_inflight >= 1, f"{p}.max_inflight", "must be >= 1")
        check(self.max_backlog >= 0, f"{p}.max_backlog", "must be >= 0 (0: no limit)")
        check(self.ack_wait_s >= 1, f"{p}.ack_wait_s", "must be >= 1")
        check(self.max_deliver >= 1, f"{p}.max_deliver", "must be >= 1")
        check(self.publish_timeout_s > 0, f"{p}.publish_timeout_s", "must be > 0")
        check(self.begin_timeout_s > 0, f"{p}.begin_timeout_s", "must be > 0")
        check(self.connect_timeout_s > 0, f"{p}.connect_timeout_s", "must be > 0")
        check(self.inline_max_bytes >= 0, f"{p}.inline_max_bytes", "must be >= 0")
        check(
            self.duplicate_window_s >= self.publish_timeout_s,
            f"{p}.duplicate_window_s",
            "must be >= publish_timeout_s (a re-sent message must still be recognised)",
        )
        check(self.events_max_age_s > 0, f"{p}.events_max_age_s", "must be > 0")
        check(self.crops_max_age_s > 0, f"{p}.crops_max_age_s", "must be > 0")
        check(self.status_every_s >= 0, f"{p}.status_every_s", "must be >= 0")
