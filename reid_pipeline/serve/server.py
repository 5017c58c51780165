"""Running the console: uvicorn in the foreground (``reid serve``) or in a thread beside the
live loop (``reid stream --serve``).

uvicorn's access log shows method, path and status only; the token travels in a header or
a cookie, never in a URL, so it never reaches a log line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from reid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _server(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """SIGINT/SIGTERM end the server (and the command, with exit 0); uvicorn's own
            handler would raise the signal again afterwards."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=log_level.upper() == "DEBUG",
        timeout_graceful_shutdown=2,
        lifespan="off",
        server_header=False,
    )
    return Server(config)


def serve_forever(app: Any, host: str, port: int, log_level: str = "INFO") -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both)."""
    server = _server(app, host, port, log_level)
    server.run()
    if not server.started:
        raise ConfigError(
            f"config key 'serve.port': cannot listen on {host}:{port} (in use, or not allowed)"
        )


class BackgroundServer:
    """uvicorn in a daemon thread (``start`` waits until it listens; ``stop`` ends it)."""

    def __init__(self, app: Any, host: str, port: int, log_level: str = "WARNING") -> None:
        self.host, self.port = host, port
        self.server = _server(app, host, port, log_level)
        self.thread = threading.Thread(target=self.server.run, name="reid-console", daemon=True)

    def start(self, timeout_s: float = 20.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(
                    f"config key 'serve.listen': cannot listen on {self.host}:{self.port} "
                    "(in use, or not allowed)"
                )
            time.sleep(0.02)
        log.info("console listening on http://%s:%d", self.host, self.port)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
