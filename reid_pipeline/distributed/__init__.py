"""The distributed mode: camera workers, a durable stream (NATS JetStream), one matcher.

```
reid worker (cameras a, b) --+                                    +--> <prefix>.events.*
reid worker (cameras c, d) --+--> <prefix>.tracklets.<camera> --> reid matcher --> gallery
          front half              work-queue stream, acks        back half (only writer)
```

The worker runs the engine's front (detect, track, embed) with ``RemoteBack`` as its back
end (``worker``); the matcher consumes the stream and commits through the engine's own
``Back`` - the code ``reid process`` runs - so both modes decide identities the same way
(``matcher``). The message format is ``wire``; subjects, streams and connecting are
``broker``. ``reid process`` and ``reid stream`` do not touch any of this.

Why NATS JetStream: durable streams with per-message acknowledgement, redelivery, a
work-queue retention (the stream holds exactly the backlog), broker-side de-duplication,
request/reply and an object store in one small server that runs on this machine for the
tests; Kafka would add a JVM and partitions for nothing a gallery's single writer needs,
Redis Streams lacks durable storage by default and an object store.
"""
