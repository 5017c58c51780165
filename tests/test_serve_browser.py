"""The operator console in a real browser (Debian's Chromium driven by Playwright) against
servers the test starts: ``reid serve`` on a gallery the test builds (identity list, search
by a dropped photo, the annotated video playing and seeking), and ``reid stream --serve``
on the test RTSP camera (an alert arriving without a reload, a live tile showing frames).
Screenshots are saved under the test's tmp folder."""

from __future__ import annotations

import base64
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from rtsp_server import RtspTestServer, ensure_gst_rtsp, free_port
from serve_helpers import PEOPLE, Built, build_gallery, console_config

from reid_pipeline.gallery import Gallery
from reid_pipeline.serve.search import PhotoSearch

pytestmark = pytest.mark.timeout(600)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (installed when missing: never skipped)."""
    if not Path(CHROMIUM).exists():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["install", "-y", "--no-install-recommends", "chromium"], ["update"]):
            subprocess.run(["apt-get", *args], env=env, check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            env=env,
            check=False,
            capture_output=True,
        )
    assert Path(CHROMIUM).exists()
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Proc:
    """A ``reid`` subprocess with its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, REID_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "reid_pipeline", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.out.append(line)
            self.lines.put(line)

    def wait_for_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.p.poll() is None, "".join(self.out)[-3000:]
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{url} never answered:\n{''.join(self.out)[-3000:]}")

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return int(self.p.returncode)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("console")
    cfg = console_config()
    with Gallery.open(str(root / "reid.db")) as g:
        return build_gallery(g, root, PhotoSearch(g, cfg).embed)


@pytest.fixture(scope="module")
def served(built: Built) -> Iterator[str]:
    """``reid serve`` on the built gallery, on a free loopback port."""
    port = free_port()
    proc = Proc(
        [
            "serve",
            "--db",
            str(built.db),
            "--port",
            str(port),
            "--detector",
            "hog",
            "--device",
            "cpu",
        ],
        built.db.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_http(base + "/healthz", 90)
        yield base
    finally:
        assert proc.stop() == 0, "".join(proc.out)[-3000:]


def new_page(browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def test_identities_search_and_video_in_the_browser(
    browser: Any, served: str, built: Built, tmp_path: Path
) -> None:
    page, errors = new_page(browser)
    # the identity list
    page.goto(served + "/identities")
    assert page.locator("a.card").count() == PEOPLE
    assert page.get_attribute("#summary", "data-total") == str(PEOPLE)
    page.wait_for_function("() => document.body.getAttribute('data-images-ok') !== null")
    assert page.get_attribute("body", "data-images-broken") == "0"
    assert page.get_attribute("body", "data-images-ok") == str(PEOPLE)
    page.screenshot(path=str(tmp_path / "identities.png"), full_page=True)

    # a photo dropped on the search page finds the right identity
    page.goto(served + "/search")
    page.select_option("select[name=mode]", "crop")
    photo = base64.b64encode(built.queries[2].read_bytes()).decode()
    page.evaluate(
        """(b64) => {
          const bin = atob(b64), u8 = new Uint8Array(bin.length);
          for (let i = 0; i < bin.length; i++) { u8[i] = bin.charCodeAt(i); }
          const dt = new DataTransfer();
          dt.items.add(new File([u8], 'suspect.jpg', { type: 'image/jpeg' }));
          const form = document.getElementById('search-form');
          for (const kind of ['dragenter', 'dragover', 'drop']) {
            form.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true }));
          }
        }""",
        photo,
    )
    page.wait_for_selector("body[data-search=done]", timeout=120_000)
    top = page.locator('#hits .card[data-rank="1"]')
    assert top.get_attribute("data-identity") == str(built.ids[2])
    assert page.locator("#hits .card").count() >= 3
    assert float(top.locator(".probability").inner_text()) > 0.5
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

    # the identity page: its annotated video loads, plays in the browser and seeks to a
    # sighting's second when its crop's time is clicked
    top.click()
    page.wait_for_url(f"**/identities/{built.ids[2]}")
    video = page.locator("section[data-camera=lobby] video")
    page.wait_for_function(
        "() => document.querySelector('section[data-camera=lobby] video').readyState >= 1",
        timeout=60_000,
    )
    state = video.evaluate("v => ({err: v.error && v.error.code, rs: v.readyState, d: v.duration})")
    assert state["err"] is None and state["rs"] >= 1, state
    assert state["d"] == pytest.approx((100 * PEOPLE + 100) / 10.0, abs=0.5)
    link = page.locator("section[data-camera=lobby] figcaption a[data-seek]").last
    target = float(link.get_attribute("data-seek") or "nan")
    assert target == pytest.approx((100 * 2 + 40 + 10) / 10.0)  # frame 250 at 10 fps
    link.click()
    page.wait_for_selector("section[data-camera=lobby] video[data-seeked]", timeout=60_000)
    after = video.evaluate(
        "v => ({t: v.currentTime, rs: v.readyState, err: v.error && v.error.code,"
        " seeked: parseFloat(v.getAttribute('data-seeked'))})"
    )
    assert after["err"] is None and after["rs"] >= 2, after
    assert after["seeked"] == pytest.approx(target, abs=0.15), after
    assert page.url.endswith(f"/identities/{built.ids[2]}")  # seeking stays on the page
    page.screenshot(path=str(tmp_path / "identity.png"), full_page=True)
    assert not errors, errors
    for name in ("identities.png", "search.png", "identity.png"):
        shot = cv2.imread(str(tmp_path / name))
        assert shot is not None and shot.std() > 10, name
    page.close()


# ---------------------------------------------------------------- the live console


@pytest.fixture(scope="module")
def scene_frames(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo scene's lobby camera as JPEG frames (the RTSP test server loops them)."""
    from reid_pipeline.datasets.scene import demo_scene_spec, render_scene

    ensure_gst_rtsp()
    root = tmp_path_factory.mktemp("scene")
    video = render_scene(demo_scene_spec(), root)["lobby"]
    folder = root / "lobby"
    folder.mkdir()
    cap = cv2.VideoCapture(str(video))
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
        i += 1
    cap.release()
    assert i > 50
    return str(folder / "%05d.jpg")


@pytest.fixture(scope="module")
def live_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised ReID model and a config for a quick CPU run (the
    machinery is under test here, not recognition)."""
    import torch
    import yaml

    from reid_pipeline.config import load_config
    from reid_pipeline.embed.model import ReIDModel, save_checkpoint

    root = tmp_path_factory.mktemp("model")
    model_cfg = {"backbone": "osnet_x0_25", "embed_dim": 64, "height": 128, "width": 64}
    torch.manual_seed(0)
    model = ReIDModel("osnet_x0_25", num_classes=1, embed_dim=64, height=128, width=64)
    cfg = load_config(overrides={f"model.{k}": v for k, v in model_cfg.items()})
    ckpt = save_checkpoint(root / "tiny.pt", model.eval(), cfg)
    data = {
        "device": "cpu",
        "detector": {"kind": "hog"},
        "model": {**model_cfg, "checkpoint": str(ckpt)},
        "tracker": {"track_buffer": 6, "max_crops": 4, "min_length": 2},
        "stream": {
            "open_timeout_s": 5,
            "read_timeout_s": 3,
            "probe_s": 0.3,
            "status_every_s": 0,
            "provisional_every": 3,
        },
        "serve": {"tile_fps": 5},
    }
    path = root / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_live_alert_and_tile_in_the_browser(
    browser: Any, scene_frames: str, live_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    port = free_port()
    with RtspTestServer(scene_frames, path="/lobby", width=480, height=272) as cam:
        proc = Proc(
            [
                "stream",
                cam.url,
                "--camera",
                "lobby",
                "--watch",
                "1",
                "--serve",
                f"127.0.0.1:{port}",
                "--config",
                str(live_config),
                "--out",
                str(out),
            ],
            out,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            proc.wait_for_http(base + "/healthz", 120)
            page, errors = new_page(browser)
            page.goto(base + "/live", wait_until="domcontentloaded")
            page.evaluate("() => { window.__notReloaded = true; }")
            # a frame in the tile (MJPEG of annotated frames)
            page.wait_for_function(
                "() => { const i = document.querySelector('.tile[data-camera=lobby] img');"
                " return i && i.naturalWidth === 480; }",
                timeout=120_000,
            )
            # the alert: identity 1 is watched; it arrives through the event feed
            page.wait_for_selector('#alerts li[data-alert="true"]', timeout=240_000)
            alert = page.locator('#alerts li[data-alert="true"]').first
            assert alert.get_attribute("data-identity") == "1"
            assert alert.get_attribute("data-camera") == "lobby"
            assert page.evaluate("() => window.__notReloaded === true")  # no reload happened
            cams = page.evaluate("() => fetch('/api/cameras').then(r => r.json())")
            lobby = next(c for c in cams if c["name"] == "lobby")
            assert lobby["live"] and lobby["state"] == "live"
            assert lobby["tile_frames_sent"] >= 2, lobby  # the tile keeps getting frames
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            tile = page.locator(".tile[data-camera=lobby] img")
            tile.screenshot(path=str(tmp_path / "tile.png"))
            shot = cv2.imread(str(tmp_path / "tile.png"))
            assert shot is not None and shot.std() > 10  # a picture, not a blank box
            assert not [e for e in errors if "mjpeg" not in e], errors
            page.close()
        finally:
            rc = proc.stop()
    log = "".join(proc.out)
    assert rc == 0, log[-3000:]
    assert f"console: http://127.0.0.1:{port}/" in log and "stopped (SIGTERM)" in log
