"""A small RTSP test camera, plus the helpers tests use to run it.

Run as a script under the *system* Python (``/usr/bin/python3``), which has GStreamer's
introspection bindings (the project's venv does not):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam videotestsrc
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam 'frames/%05d.jpg'
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam clip.mp4
    /usr/bin/python3 tests/rtsp_server.py --port 8554 garbage   # TCP: random bytes, not RTSP
    /usr/bin/python3 tests/rtsp_server.py --port 8554 silent    # TCP: accepts, never answers

Sources: ``videotestsrc`` (a moving ball), a printf pattern of JPEG/PNG frames (looped
forever, so a test scene can stream for as long as a test needs), or any video file
(played once per client). Video is H.264 (``x264enc tune=zerolatency``) in RTP
(``rtph264pay name=pay0``), always bound to 127.0.0.1. ``--user/--password`` require
basic authentication, so credential handling is tested against a real server.

The helper half (``ensure_gst_rtsp``, ``RtspTestServer``, ``free_port``) is imported by
the tests under the project's Python; it imports nothing from GStreamer.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
GST_PACKAGES = [
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-rtsp",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-libav",
    "python3-gi",
]
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); "
    "gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst; Gst.init(None); "
    "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
)


# ------------------------------------------------------------------ helpers (project Python)


def gst_rtsp_available() -> bool:
    """True when the system Python can build an RTSP server with an H.264 encoder."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, timeout=60, check=False)
    return r.returncode == 0


def ensure_gst_rtsp() -> None:
    """Install the Debian GStreamer RTSP server packages when they are missing.

    CI runs as root on a fresh Debian machine with the registry reachable; a test that
    needs a real camera installs what it needs rather than skipping.
    """
    if gst_rtsp_available():
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(
            "GStreamer RTSP server missing and apt-get not found: install " + " ".join(GST_PACKAGES)
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + [apt, "install", "-y", "--no-install-recommends", *GST_PACKAGES]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if r.returncode != 0:  # stale or missing package lists: refresh once and retry
        subprocess.run(
            sudo + [apt, "update"], capture_output=True, env=env, timeout=600, check=False
        )
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if r.returncode != 0 or not gst_rtsp_available():
        raise RuntimeError(f"could not install the GStreamer RTSP server: {r.stderr[-2000:]}")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspTestServer:
    """One server process on loopback; ``stop``/``start`` simulate a camera going away.

    The port stays the same across restarts, so a client's URL keeps working when the
    "camera" comes back.
    """

    def __init__(
        self,
        source: str = "videotestsrc",
        path: str = "/cam",
        port: int = 0,
        width: int = 320,
        height: int = 240,
        fps: int = 10,
        user: str = "",
        password: str = "",
    ) -> None:
        self.source, self.path, self.port = source, path, port or free_port()
        self.width, self.height, self.fps = width, height, fps
        self.user, self.password = user, password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        cred = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{self.path}"

    def start(self, wait_s: float = 20.0) -> RtspTestServer:
        cmd = [
            SYSTEM_PYTHON,
            str(Path(__file__).resolve()),
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--width",
            str(self.width),
            "--height",
            str(self.height),
            "--fps",
            str(self.fps),
        ]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password]
        cmd.append(self.source)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # ready when the port accepts connections
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"RTSP test server exited: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"RTSP test server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # a camera losing power: no goodbye to the clients
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> RtspTestServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ the server (system Python)


def _encoder(args: argparse.Namespace) -> str:
    caps = f"video/x-raw,format=I420,width={args.width},height={args.height}"
    return (
        f"videoconvert ! videoscale ! videorate ! {caps},framerate={args.fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "bitrate=1000 ! rtph264pay name=pay0 pt=96 config-interval=1"
    )


def _launch_line(args: argparse.Namespace) -> str:
    src = args.source
    if src == "videotestsrc":
        head = "videotestsrc is-live=true pattern=ball"
    elif "%" in src:  # a numbered frame sequence, looped forever
        dec = "pngdec" if src.lower().endswith(".png") else "jpegdec"
        kind = "image/png" if dec == "pngdec" else "image/jpeg"
        head = (
            f"multifilesrc location={src} index=0 loop=true "
            f"caps={kind},framerate={args.fps}/1 ! {dec}"
        )
    else:
        head = f"filesrc location={src} ! decodebin"
    return f"( {head} ! {_encoder(args)} )"


def _serve_rtsp(args: argparse.Namespace) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_line(args))
    factory.set_shared(True)  # every client sees the same live picture, like a camera
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot bind 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    loop.run()


def _serve_tcp(args: argparse.Namespace) -> None:
    """A misbehaving camera: 'garbage' answers random bytes, 'silent' never answers."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(16)

    def handle(conn: socket.socket) -> None:
        rng = random.Random()
        try:
            while True:
                if args.source == "garbage":
                    conn.sendall(rng.randbytes(4096))
                    time.sleep(0.01)
                else:
                    if not conn.recv(4096):
                        break
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "source", help="videotestsrc | frames/%%05d.jpg | video file | garbage | silent"
    )
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    args = ap.parse_args(argv)
    if args.source in ("garbage", "silent"):
        _serve_tcp(args)
    else:
        _serve_rtsp(args)


if __name__ == "__main__":
    main()
