"""The static report opened in a real headless Chromium: pages load, identities and pictures
are there.

Chromium is Debian's ``chromium`` package; a fresh machine does not have it, so the session
fixture installs it with apt-get (never skipped: a report nobody can open is a failed report).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_pipeline.errors import OutputError
from reid_pipeline.report.site import (
    CropView,
    IdentityView,
    IntervalView,
    SiteOptions,
    fmt_time,
    write_site,
)

CHROMIUM = "/usr/bin/chromium"


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path to a headless-capable Chromium, installed from Debian when missing."""
    if not Path(CHROMIUM).exists():
        r = _apt("install", "-y", "--no-install-recommends", "chromium")
        if r.returncode != 0:  # stale package lists on a fresh machine
            _apt("update")
            r = _apt("install", "-y", "--no-install-recommends", "chromium")
        assert r.returncode == 0, f"apt-get install chromium failed:\n{r.stderr[-2000:]}"
    assert Path(CHROMIUM).exists()
    return CHROMIUM


def _chrome(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--allow-file-access-from-files",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def dump_dom(chromium: str, tmp: Path, page: Path) -> str:
    r = _chrome(chromium, tmp, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert "<body" in r.stdout, r.stderr[-2000:]
    return r.stdout


def screenshot(chromium: str, tmp: Path, page: Path, png: Path) -> None:
    r = _chrome(
        chromium,
        tmp,
        f"--screenshot={png}",
        "--window-size=1200,900",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert r.returncode == 0, r.stderr[-2000:]


def _person_jpeg(path: Path, seed: int) -> Path:
    """A small synthetic 'person' crop: coloured torso and legs on a grey background."""
    rng = np.random.default_rng(seed)
    img = np.full((128, 64, 3), 128, np.uint8)
    top, legs = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
    cv2.circle(img, (32, 16), 10, (150, 180, 210), -1)
    img[28:72, 14:50] = top
    img[72:124, 18:46] = legs
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _identities(crops_dir: Path, n: int, t0: float = 1_790_000_000.0) -> list[IdentityView]:
    out = []
    for i in range(1, n + 1):
        cams = ["lobby", "street"] if i % 2 else ["lobby"]
        crops, ivs = [], []
        for k, cam in enumerate(cams):
            start = t0 + 100 * i + 40 * k
            ivs.append(IntervalView(cam, start, start + 12, video_time=5.0 * i + 40 * k))
            for j in range(3):
                p = _person_jpeg(crops_dir / f"{i}" / f"{cam}_{j}.jpg", 10 * i + j)
                crops.append(CropView(p, cam, start + 4 * j, video_time=5.0 * i + 4 * j))
        out.append(
            IdentityView(
                id=i,
                name="courier <b>" if i == 2 else None,
                first_seen=ivs[0].start,
                last_seen=ivs[-1].end,
                sightings=30 * len(cams),
                cameras=cams,
                crops=crops,
                intervals=ivs,
            )
        )
    return out


def test_report_opens_in_chromium_with_all_identities_and_images(
    chromium: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    idents = _identities(run / "crops", 7)
    video = run / "lobby.mp4"
    video.write_bytes(b"\x00")  # a file is enough for the link; the browser is not asked to play it
    index = write_site(idents, run / "report", SiteOptions(page_size=5), videos={"lobby": video})

    dom = dump_dom(chromium, tmp_path, index)
    assert 'data-total="7"' in dom and 'data-pages="2"' in dom
    assert len(re.findall(r'class="card"', dom)) == 5  # first page of a paginated index
    assert re.search(r'data-images-ok="5"', dom), "thumbnails did not load"
    assert 'data-images-broken="0"' in dom
    assert 'href="index-2.html"' in dom
    assert "courier &lt;b&gt;" in dom  # user-given names are escaped, not markup

    dom2 = dump_dom(chromium, tmp_path, run / "report" / "index-2.html")
    assert len(re.findall(r'class="card"', dom2)) == 2
    assert 'data-images-ok="2"' in dom2

    page = run / "report" / "identities" / "1.html"
    dom3 = dump_dom(chromium, tmp_path, page)
    assert 'data-images-ok="6"' in dom3 and 'data-images-broken="0"' in dom3
    assert len(re.findall(r'<section class="camera"', dom3)) == 2
    # the annotated video of the lobby camera is linked at the tracklet's time, relatively
    assert re.search(r'<video[^>]+src="\.\./\.\./lobby\.mp4#t=5\.00"', dom3)
    assert "../../lobby.mp4#t=9.00" in dom3  # a crop's own time
    assert "street.mp4" not in dom3  # no video for street: no dead link
    assert "http://" not in dom3 and "https://" not in dom3  # nothing external

    png = tmp_path / "index.png"
    screenshot(chromium, tmp_path, index, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    shot = cv2.imread(str(png))
    assert shot is not None and shot.shape[:2] == (900, 1200)
    assert shot.std() > 10  # not a blank page


def test_deleted_crop_shows_as_broken_and_rebuild_drops_stale_pages(
    chromium: str, tmp_path: Path
) -> None:
    idents = _identities(tmp_path / "crops", 3)
    out = tmp_path / "report"
    write_site(idents, out)
    (tmp_path / "crops" / "1" / "street_0.jpg").unlink()
    dom = dump_dom(chromium, tmp_path, out / "index.html")
    assert 'data-images-broken="1"' in dom  # the thumbnail of #1 is its middle crop

    write_site(idents[1:], out)  # identity 1 deleted from the gallery
    assert not (out / "identities" / "1.html").exists()
    assert sorted(p.name for p in (out / "identities").iterdir()) == ["2.html", "3.html"]


def test_copy_crops_makes_a_portable_site(chromium: str, tmp_path: Path) -> None:
    idents = _identities(tmp_path / "crops", 2)
    out = tmp_path / "report"
    write_site(idents, out, SiteOptions(copy_crops=True))
    shutil.rmtree(tmp_path / "crops")  # the gallery's crops are gone; the copies remain
    dom = dump_dom(chromium, tmp_path, out / "identities" / "1.html")
    assert 'data-images-ok="6"' in dom and 'data-images-broken="0"' in dom


def test_empty_gallery_and_foreign_folder(tmp_path: Path) -> None:
    index = write_site([], tmp_path / "r")
    assert 'data-total="0"' in index.read_text()
    other = tmp_path / "notareport"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    with pytest.raises(OutputError, match="notareport"):
        write_site([], other)
    assert (other / "thesis.txt").read_text() == "keep me"


def test_time_formatting() -> None:
    assert fmt_time(75.25) == "0:01:15.2"
    assert fmt_time(1_790_000_000.0).endswith("UTC")


def _gallery_with_video(run: Path) -> tuple[Path, dict[int, list[str]]]:
    """A SQLite gallery written through the repository, plus an annotated video of 'lobby'."""
    from reid_pipeline.config import GalleryConfig
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.types import TrackedBox, Tracklet

    db = run / "reid.db"
    cams: dict[int, list[str]] = {}
    with Gallery.open(str(db), GalleryConfig()) as g:
        src = {c: g.begin_source(c, f"fp-{c}").source_id for c in ("lobby", "street")}
        for n in range(3):
            iid = g.create_identity(name="courier" if n == 0 else None)
            cams[iid] = ["lobby", "street"] if n != 1 else ["street"]
            for cam in cams[iid]:
                f0 = 20 + 40 * n + (5 if cam == "street" else 0)
                boxes = [
                    TrackedBox(cam, f0 + k, (f0 + k) / 10.0, (4.0, 4.0, 36.0, 90.0), 0.9, n + 1)
                    for k in range(6)
                ]
                crops = [
                    cv2.imread(str(_person_jpeg(run / "tmp" / f"{n}{cam}{k}.jpg", 7 * n + k)))
                    for k in range(3)
                ]
                tr = Tracklet(cam, n + 1, boxes, crops, [f0, f0 + 2, f0 + 4], True)
                g.record_tracklet(src[cam], tr, identity_id=iid)
    shutil.rmtree(run / "tmp")
    (run / "videos").mkdir()
    vw = cv2.VideoWriter(
        str(run / "videos" / "lobby.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48)
    )
    for i in range(150):
        vw.write(np.full((48, 64, 3), i % 255, np.uint8))
    vw.release()
    return db, cams


def test_reid_report_command_on_a_gallery(chromium: str, tmp_path: Path) -> None:
    from reid_pipeline.cli import main

    run = tmp_path / "day1"
    run.mkdir()
    db, cams = _gallery_with_video(run)
    assert main(["report", "--db", str(db), "--page-size", "2"]) == 0
    index = run / "report" / "index.html"
    dom = dump_dom(chromium, tmp_path, index)
    assert 'data-total="3"' in dom and 'data-pages="2"' in dom
    assert 'data-images-ok="2"' in dom and 'data-images-broken="0"' in dom
    assert "courier" in dom
    first = min(cams)
    page = run / "report" / "identities" / f"{first}.html"
    dom = dump_dom(chromium, tmp_path, page)
    assert 'data-images-ok="6"' in dom and 'data-images-broken="0"' in dom
    # frame 20 of a 10 fps video: two seconds in; links are relative to the run folder
    assert re.search(r'<video[^>]+src="\.\./\.\./videos/lobby\.mp4#t=2\.00"', dom)
    assert 'data-camera="street"' in dom and "street.mp4" not in dom
    png = tmp_path / "identity.png"
    screenshot(chromium, tmp_path, page, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reid_report_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reid_pipeline.cli import main

    assert main(["report", "--db", str(tmp_path / "missing.db")]) == 2
    assert "missing.db' does not exist" in capsys.readouterr().err
    other = tmp_path / "other.db"
    other.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    assert main(["report", "--db", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.db" in err and err.startswith("error: ")
    assert main(["report", "--db", str(tmp_path / "x.db"), "--page-size", "0"]) == 2
    assert "report.page_size" in capsys.readouterr().err
