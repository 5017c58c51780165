"""The operator console's HTTP API on a gallery the tests build (generated people, crops on
disk, exemplars by the bundled default model, an annotated lobby video): every endpoint,
the access-token rules off the loopback interface, the file rules (traversal, symbolic
links, erased people), uploads, and property-based requests against its own OpenAPI schema
(schemathesis): no 5xx for any generated request."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from serve_helpers import CAMERAS, PEOPLE, Built, build_gallery, console_config

from reid_pipeline.errors import ConfigError
from reid_pipeline.gallery import Gallery
from reid_pipeline.serve.app import create_app
from reid_pipeline.serve.live import EventFeed, FrameSlot, LiveHub
from reid_pipeline.serve.search import PhotoSearch
from reid_pipeline.types import Frame

TOKEN = "s3cret-console-token-42"
EXAMPLES = int(os.environ.get("REID_FUZZ_EXAMPLES", "12"))  # generated requests per operation


@pytest.fixture(scope="module")
def searcher() -> Iterator[PhotoSearch]:
    """One loaded model for the module (the console loads it on the first search)."""
    cfg = console_config()
    s = PhotoSearch(None, cfg)  # type: ignore[arg-type] - the gallery is set per test
    yield s


def open_console(g: Gallery, searcher: PhotoSearch, **serve: Any) -> tuple[TestClient, Any]:
    cfg = console_config(**serve)
    searcher.gallery = g
    searcher.cfg = cfg
    app = create_app(g, cfg, search=searcher)
    return TestClient(app), app


@pytest.fixture
def built(gallery: Gallery, tmp_path: Path, searcher: PhotoSearch) -> Built:
    """The test gallery on SQLite and on PostgreSQL (conftest's ``gallery`` fixture)."""
    searcher.gallery = gallery
    return build_gallery(gallery, tmp_path, searcher.embed)


@pytest.fixture
def sqlite_built(tmp_path: Path, searcher: PhotoSearch) -> Iterator[tuple[Gallery, Built]]:
    with Gallery.open(str(tmp_path / "reid.db")) as g:
        searcher.gallery = g
        yield g, build_gallery(g, tmp_path, searcher.embed)


def jpeg(path: Path) -> tuple[str, bytes, str]:
    return ("photo.jpg", path.read_bytes(), "image/jpeg")


# ---------------------------------------------------------------- every endpoint


def test_every_endpoint(
    gallery: Gallery, built: Built, searcher: PhotoSearch, tmp_path: Path
) -> None:
    client, _ = open_console(gallery, searcher, videos=str(tmp_path / "videos"))
    ids = built.ids
    assert client.get("/healthz").json() == {"ok": True, "live": False}
    schema = client.get("/openapi.json").json()
    assert "/api/identities" in schema["paths"] and "/api/search" in schema["paths"]

    # identities: paged, most recently seen first, filtered by camera and time
    page = client.get("/api/identities").json()
    assert page["total"] == PEOPLE and len(page["items"]) == PEOPLE
    assert [i["id"] for i in page["items"]] == sorted(ids.values(), reverse=True)
    first = page["items"][0]
    assert first["cameras"] == sorted(CAMERAS.values()) and first["sightings"] == 6
    assert client.get(first["thumbnail"]).headers["content-type"] == "image/jpeg"
    two = client.get("/api/identities", params={"offset": 2, "limit": 2}).json()
    assert two["total"] == PEOPLE and [i["id"] for i in two["items"]] == [
        i["id"] for i in page["items"][2:4]
    ]
    t_mid = 1_790_000_000.0 + (100 * 3 + 40) / 10.0  # person 3's lobby tracklet starts
    late = client.get("/api/identities", params={"since": t_mid}).json()
    assert {i["id"] for i in late["items"]} == {ids[p] for p in range(3, PEOPLE + 1)}
    early = client.get("/api/identities", params={"until": t_mid - 1}).json()
    assert {i["id"] for i in early["items"]} == {ids[1], ids[2]}
    assert client.get("/api/identities", params={"camera": "nowhere"}).json()["total"] == 0
    assert client.get("/api/identities", params={"limit": 0}).status_code == 422

    # one identity: per camera sightings, tracklets, crops, the video's times
    one = client.get(f"/api/identities/{ids[2]}").json()
    per = {c["camera"]: c for c in one["per_camera"]}
    assert set(per) == set(CAMERAS.values())
    lobby = per["lobby"]
    assert lobby["sightings"] == 3 and lobby["tracklets"] == 1
    assert lobby["video"] == "/media/videos/lobby.webm" and per["street"]["video"] is None
    assert lobby["intervals"][0]["video_time"] == pytest.approx((100 * 2 + 40) / 10.0)
    assert len(lobby["crops"]) == 3
    for c in lobby["crops"]:
        r = client.get(c["url"])
        assert r.status_code == 200 and cv2.imdecode(
            np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR
        ).shape == (128, 64, 3)
    assert client.get("/api/identities/999999").status_code == 404

    # the annotated video, with range requests (what a browser's seek sends)
    r = client.get("/media/videos/lobby.webm", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100 and r.content[:4] == b"\x1a\x45\xdf\xa3"
    assert r.headers["content-type"] == "video/webm"

    # search by photo: the same code path as `reid search`
    firsts = 0
    for pid, q in built.queries.items():
        r = client.post("/api/search", files={"photo": jpeg(q)}, data={"mode": "crop", "top": 6})
        assert r.status_code == 200, r.text
        res = r.json()
        probs = [h["probability"] for h in res["hits"]]
        assert res["scored"] == PEOPLE and probs == sorted(probs, reverse=True)
        assert res["query"].startswith("data:image/jpeg;base64,")
        firsts += res["hits"][0]["identity"] == ids[pid]
        top = res["hits"][0]
        assert {c["camera"] for c in top["cameras"]} == set(CAMERAS.values())
        assert client.get(top["thumbnail"]).status_code == 200
    assert firsts >= 4, f"right identity first for {firsts} of {PEOPLE} queries"
    assert (
        client.post("/api/search", files={"photo": ("x.txt", b"hello", "text/plain")}).status_code
        == 415
    )
    truncated = built.queries[1].read_bytes()[:40]  # JPEG magic, but no picture
    r = client.post("/api/search", files={"photo": ("t.jpg", truncated, "image/jpeg")})
    assert r.status_code == 400 and "not a readable image" in r.json()["detail"]
    assert client.post("/api/search").status_code == 422
    big = b"\xff\xd8\xff" + b"0" * (11 * 1024 * 1024)
    assert (
        client.post("/api/search", files={"photo": ("b.jpg", big, "image/jpeg")}).status_code == 413
    )

    # watch list through the gallery's own flag
    a, b, c, d = ids[1], ids[2], ids[3], ids[4]
    assert client.put(f"/api/watchlist/{a}").json() == {"ids": [a]}
    assert gallery.identity_ids(flagged=True) == {a}
    assert [
        i["id"] for i in client.get("/api/identities", params={"flagged": True}).json()["items"]
    ] == [a]
    assert client.get("/api/watchlist").json() == {"ids": [a]}
    assert client.delete(f"/api/watchlist/{a}").json() == {"ids": []}
    assert client.put("/api/watchlist/999999").status_code == 404

    # rename (user input: escaped on every page)
    evil = '<img src=x onerror="alert(1)">'
    assert client.post(f"/api/identities/{a}/rename", json={"name": evil}).status_code == 200
    assert client.get(f"/api/identities/{a}").json()["name"] == evil
    html = client.get(f"/identities/{a}").text
    assert evil not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert evil not in client.get("/identities").text
    assert "content-security-policy" in client.get("/identities").headers

    # merge, split, delete: GalleryManager's operations
    r = client.post(f"/api/identities/{a}/merge", json={"other": b})
    assert r.status_code == 200 and r.json()["rows"]["tracklets"] == 2
    assert client.get(f"/api/identities/{b}").status_code == 404
    assert client.get(f"/api/identities/{a}").json()["tracklets"] == 4
    assert client.post(f"/api/identities/{a}/merge", json={"other": a}).status_code == 400
    moved = built.tracklets[b][:1]
    r = client.post(f"/api/identities/{a}/split", json={"tracklets": moved})
    new = r.json()["identity"]
    assert r.status_code == 200 and new not in ids.values()
    assert client.get(f"/api/identities/{new}").json()["tracklets"] == 1
    assert client.post(f"/api/identities/{a}/split", json={"tracklets": []}).status_code == 422
    crops = [
        k["url"]
        for cam in client.get(f"/api/identities/{c}").json()["per_camera"]
        for k in cam["crops"]
    ]
    files = sorted((tmp_path / "crops").rglob("*.jpg")) if (tmp_path / "crops").is_dir() else []
    assert crops and files
    r = client.delete(f"/api/identities/{c}")
    assert r.status_code == 200 and r.json()["files"] == len(crops)
    for url in crops:  # erased: at once, by every route
        assert client.get(url).status_code == 404
    assert client.get(f"/api/identities/{c}").status_code == 404
    assert client.get(f"/identities/{c}").status_code == 404
    assert c not in {i["id"] for i in client.get("/api/identities").json()["items"]}

    # cameras (recorded here), events (none without a live stream), pages, assets
    cams = {k["name"]: k for k in client.get("/api/cameras").json()}
    assert set(cams) == set(CAMERAS.values()) and not cams["lobby"]["live"]
    assert cams["lobby"]["video"] == "/media/videos/lobby.webm"
    assert client.get("/api/events/recent").json() == []
    for path in ("/live", "/identities", f"/identities/{d}", "/search", "/login"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
    assert client.get("/", follow_redirects=False).headers["location"] == "/identities"
    for name in ("report.css", "report.js", "console.css", "console.js"):
        assert client.get(f"/assets/{name}").status_code == 200
    r = client.post(
        "/search",
        files={"photo": jpeg(built.queries[5])},
        data={"mode": "crop"},
        headers={"X-Fragment": "1"},
    )
    assert r.status_code == 200 and 'data-rank="1"' in r.text

    # purge: nothing is that old; then everything is
    assert client.post("/api/purge", json={"older_than": "1000d"}).json()["rows"] == {}
    assert client.post("/api/purge", json={"older_than": "forever"}).status_code == 422
    time.sleep(0.01)
    r = client.post("/api/purge", json={"older_than": "0.001s"})
    assert r.status_code == 200 and r.json()["rows"]["tracklets"] >= 1
    assert client.get("/api/identities").json()["total"] == 0


# ---------------------------------------------------------------- access rules


def write_and_picture_requests(app: Any, d: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Every write of the API (from its own schema) and every picture route, plus the
    search page's upload, as (method, url, kwargs)."""
    upload = {"files": {"photo": ("p.jpg", b"\xff\xd8\xff", "image/jpeg")}}
    bodies: dict[str, dict[str, Any]] = {
        "/api/identities/{identity}/rename": {"json": {"name": "x"}},
        "/api/identities/{identity}/merge": {"json": {"other": d}},
        "/api/identities/{identity}/split": {"json": {"tracklets": [1]}},
        "/api/purge": {"json": {"older_than": "1000d"}},
        "/api/search": upload,
    }
    out = [("POST", "/search", upload)]
    for path, ops in app.openapi()["paths"].items():
        for m in ops:
            if m == "get" and not path.startswith("/media"):
                continue
            url = (
                path.replace("{identity}", str(d))
                .replace("{crop_id}", "1")
                .replace("{name}", "lobby.webm")
                .replace("{camera}", "lobby")
            )
            out.append((m.upper(), url, bodies.get(path, {})))
    return out


def test_token_rules_on_a_public_bind(
    sqlite_built: tuple[Gallery, Built],
    searcher: PhotoSearch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    g, built = sqlite_built
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError, match="serve.host.*needs an access token"):
        open_console(g, searcher, host="0.0.0.0")
    with pytest.raises(ConfigError, match="serve.token"):
        console_config(host="0.0.0.0", token="short")
    client, app = open_console(g, searcher, host="0.0.0.0", token=TOKEN)
    d = built.ids[6]
    requests = write_and_picture_requests(app, d)
    paths = {u for _, u, _ in requests}
    assert {
        "/api/purge",
        f"/api/identities/{d}",
        "/media/crops/1",
        "/media/videos/lobby.webm",
        "/media/live/lobby/frame.jpg",
        "/media/live/lobby/stream.mjpeg",
    } <= paths
    assert len(requests) >= 12
    for method, url, kw in requests:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-value"},
            {"Authorization": TOKEN},
        ):
            r = client.request(method, url, headers=headers, **kw)
            assert r.status_code == 401, (method, url, headers, r.status_code)
    assert g.identity_ids() == set(built.ids.values())  # nothing was changed
    # reads and pages need it too there; pages send the browser to the login page
    assert client.get("/api/identities").status_code == 401
    r = client.get("/identities", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fidentities"
    assert (
        client.get("/openapi.json").status_code == 200 and client.get("/login").status_code == 200
    )
    # with the token: a header for API clients ...
    auth = {"Authorization": f"Bearer {TOKEN}"}
    crop = client.get(f"/api/identities/{d}", headers=auth).json()["thumbnail"]
    assert client.get(crop, headers=auth).status_code == 200
    assert client.put(f"/api/watchlist/{d}", headers=auth).json() == {"ids": [d]}
    # ... a session cookie for browsers (an HMAC of the token, not the token)
    assert client.post("/login", data={"token": "nope", "next": "/x"}).status_code == 401
    r = client.post(
        "/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.cookies.get("reid_session")
    assert cookie and TOKEN not in cookie and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert client.get(crop).status_code == 200 and client.get("/identities").status_code == 200
    # a write by cookie from another site's page is refused
    r = client.delete(f"/api/watchlist/{d}", headers={"Origin": "http://evil.example"})
    assert r.status_code == 401
    assert (
        client.delete(f"/api/watchlist/{d}", headers={"Origin": "http://testserver"}).status_code
        == 200
    )
    client.post("/logout")
    client.cookies.clear()
    assert client.get(crop).status_code == 401
    # a token file works the same; the token is never logged nor written out
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    client2, _ = open_console(g, searcher, host="0.0.0.0", token_file=str(tf))
    assert client2.get(crop).status_code == 401
    assert client2.get(crop, headers=auth).status_code == 200
    from reid_pipeline.config import write_resolved

    written = write_resolved(console_config(host="0.0.0.0", token=TOKEN), tmp_path).read_text()
    assert TOKEN not in written
    assert TOKEN not in caplog.text
    # loopback without a token: open to local users
    local, _ = open_console(g, searcher)
    assert local.get(crop).status_code == 200


def test_files_only_from_the_gallery_folders(
    sqlite_built: tuple[Gallery, Built], searcher: PhotoSearch, tmp_path: Path
) -> None:
    g, built = sqlite_built
    client, _ = open_console(g, searcher)
    secret = tmp_path / "outside.webm"
    secret.write_bytes(b"\x1a\x45\xdf\xa3 not yours")
    (tmp_path / "videos" / "evil.webm").symlink_to(secret)
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "x.webm").write_bytes(b"no")
    (tmp_path / "videos" / "sub").symlink_to(outside_dir, target_is_directory=True)
    refused = [
        "/media/videos/../reid.db",
        "/media/videos/..%2Freid.db",
        "/media/videos/%2e%2e%2freid.db",
        "/media/videos/%252e%252e%252freid.db",
        "/media/videos/%2Fetc%2Fpasswd",
        "/media/videos//etc/passwd",
        "/media/videos/..%5Creid.db",
        "/media/videos/evil.webm",  # a symbolic link out of the folder
        "/media/videos/sub%2Fx.webm",
        "/media/videos/sub/x.webm",
        "/media/videos/reid.db",
        "/media/videos/.hidden.webm",
        "/media/crops/..%2F..%2Freid.db",
        "/media/crops/%2Fetc%2Fpasswd",
        "/media/crops/1%2F..%2F2",
        "/assets/..%2Freport%2Fsite.py",
        "/assets/%2Fetc%2Fpasswd",
        "/media/crops/999999",
    ]
    for url in refused:
        r = client.get(url)
        assert r.status_code in (404, 422), (url, r.status_code)
        assert b"not yours" not in r.content and b"SQLite" not in r.content
    assert client.get("/media/crops/0").status_code == 422
    assert client.get("/media/crops/-1").status_code == 422
    assert client.get("/media/videos/lobby.webm").status_code == 200
    # a crop file replaced by a symbolic link to a file outside the crop folder
    info = g.crops(identity_id=built.ids[1])[0]
    assert client.get(f"/media/crops/{info.crop_id}").status_code == 200
    assert info.path is not None
    info.path.unlink()
    info.path.symlink_to(secret)
    assert client.get(f"/media/crops/{info.crop_id}").status_code == 404
    # a crop folder that is itself a link out of the gallery's crops
    other = g.crops(identity_id=built.ids[2])[0]
    assert other.path is not None
    folder = other.path.parent
    moved = tmp_path / "moved"
    folder.rename(moved)
    folder.symlink_to(moved, target_is_directory=True)
    assert client.get(f"/media/crops/{other.crop_id}").status_code == 404


# ---------------------------------------------------------------- the live side, in parts


def test_live_hub_slots_feed_and_writes_in_the_loop_thread(
    sqlite_built: tuple[Gallery, Built], searcher: PhotoSearch
) -> None:
    g, built = sqlite_built

    class Source:  # what LiveHub reads of an RTSP reader: its camera and status
        camera = "lobby"

        def status(self) -> Any:
            from reid_pipeline.sources.rtsp import ConnectionState, SourceStatus

            return SourceStatus(
                "lobby",
                "rtsp://***@cam/x",
                ConnectionState.LIVE,
                "",
                5,
                0,
                0,
                0,
                10.0,
                time.time(),
                time.time(),
            )

    hub = LiveHub(None, [Source()], events_kept=3)
    cfg = console_config()
    searcher.gallery = g
    client = TestClient(create_app(g, cfg, live=hub, search=searcher))
    assert client.get("/media/live/lobby/frame.jpg").status_code == 404  # no frame yet
    img = np.zeros((90, 160, 3), np.uint8)
    hub.on_frames([Frame("lobby", 7, time.time(), img)])
    r = client.get("/media/live/lobby/frame.jpg")
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), 1).shape == (
        90,
        160,
        3,
    )
    assert img.max() == 0  # the loop's frame was not drawn on
    slot = hub.slots["lobby"]
    assert slot.jpeg() is slot.jpeg() and slot.encoded == 1  # encoded once for every viewer
    cams = client.get("/api/cameras").json()
    assert (
        cams[0]["live"]
        and cams[0]["state"] == "live"
        and cams[0]["stream"].endswith("stream.mjpeg")
    )
    assert [c["name"] for c in cams] == ["lobby", "street"]

    # a console write runs in the loop's thread, between two steps
    loop_ident: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        loop_ident.append(threading.get_ident())
        while not stop.is_set():
            hub.on_frames([])
            time.sleep(0.01)

    t = threading.Thread(target=loop)
    t.start()
    ran_in: list[int] = []
    try:
        got = hub.run_write(lambda: ran_in.append(threading.get_ident()) or 5)
        r = client.put(f"/api/watchlist/{built.ids[3]}")
    finally:
        stop.set()
        t.join()
    assert got == 5 and ran_in == loop_ident and r.json() == {"ids": [built.ids[3]]}
    hub.stopped()
    assert hub.run_write(lambda: 6) == 6  # the loop has ended: at once

    # the event feed is a bounded ring; a reader catches up from its own position
    feed = EventFeed(keep=3)
    for i in range(5):
        feed.publish({"i": i})
    assert [d["i"] for _, d in feed.since(0)] == [2, 3, 4] and feed.last == 5
    assert [d["i"] for _, d in feed.since(4)] == [4]
    s = FrameSlot("x")
    assert s.jpeg() is None
    hub.close()


# ---------------------------------------------------------------- the schema, fuzzed


def test_no_generated_request_gets_a_server_error(tmp_path: Path, searcher: PhotoSearch) -> None:
    """Requests generated from the console's own schema (valid and invalid ones) for every
    operation but the two endless streams (the browser test watches those): none gets a
    5xx. (schemathesis' pytest plugin does not run under pytest 9, so its strategies are
    driven by Hypothesis here directly.)"""
    with Gallery.open(str(tmp_path / "reid.db")) as g:
        build_gallery(g, tmp_path, searcher.embed)
        app = create_app(g, console_config(), search=PhotoSearch(g, console_config()))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: list[str] = []
        tested = []
        statuses: list[int] = []
        for result in schema.get_all_operations():
            op = result.ok()
            if op.path == "/api/events" or op.path.endswith("stream.mjpeg"):
                continue
            tested.append(f"{op.method.upper()} {op.path}")

            @given(case=op.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: Any) -> None:
                r = case.call()
                statuses.append(r.status_code)
                if r.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {r.status_code}: {r.text[:300]}"
                    )

            run()
    assert len(tested) >= 17, tested
    assert not failures, "\n".join(failures)
    # generated for real: many requests, valid ones answered and invalid ones refused
    assert len(statuses) >= 4 * len(tested), len(statuses)
    assert any(200 <= x < 300 for x in statuses) and any(400 <= x < 500 for x in statuses)


def test_reid_serve_refuses_a_public_address_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reid_pipeline.cli import main

    with Gallery.open(str(tmp_path / "reid.db")):
        pass
    capsys.readouterr()  # the gallery's own log lines (when an earlier test set up logging)
    assert main(["serve", "--db", str(tmp_path / "reid.db"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config key 'serve.host'") and "token" in err
    assert main(["serve", "--db", str(tmp_path / "missing.db")]) == 2
    assert "missing.db' does not exist" in capsys.readouterr().err
    assert (
        main(["stream", "rtsp://127.0.0.1:9/x", "--serve", "nowhere", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "serve.listen" in capsys.readouterr().err
