"""Search by photo on generated people: the right identity comes first; bad inputs say why.

The gallery is built through the gallery's own repository from generated pedestrians (two
camera styles, different light and scale): one identity per person with a tracklet per
camera, exemplars embedded by the bundled default model. Queries are held-out pictures of
the same people - as crops, and pasted into a full street frame so the detector must find
them first.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_pipeline.cli import main
from reid_pipeline.config import GalleryConfig, ModelConfig
from reid_pipeline.errors import InputError
from reid_pipeline.gallery import Gallery
from reid_pipeline.pipeline.search import (
    looks_like_crop,
    person_crop,
    rank_identities,
    read_photo,
    search_photo,
    write_result_html,
)
from reid_pipeline.types import TrackedBox, Tracklet

PEOPLE = 6
SEED = 5150
CAMERAS = {1: "indoor", 2: "street"}


@pytest.fixture(scope="module")
def model():
    """The bundled default model (trained on Market-1501; it never saw generated people)."""
    from reid_pipeline.embed.model import load_model

    return load_model("default", ModelConfig(), "cpu")


@pytest.fixture(scope="module")
def embedder(model):
    from reid_pipeline.embed.embedder import Embedder

    return Embedder(model, "cpu", batch=64, half=False)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[int, list[Path]]]:
    """pid -> camera -> crop files (generated; the first of each is held out as a query)."""
    from reid_pipeline.datasets.scene import make_crops_dataset

    root = make_crops_dataset(
        tmp_path_factory.mktemp("people"), people=PEOPLE, per_camera=4, seed=SEED
    )
    out: dict[int, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for p in sorted(root.glob("*/*.jpg")):
        m = re.match(r"(\d{4})_c(\d)s1_(\d{6})", p.name)
        assert m
        out[int(m[1])][int(m[2])].append(p)
    for cams in out.values():
        for files in cams.values():
            files.sort(key=lambda p: p.name[10:16])
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, people, model, embedder):
    """A SQLite gallery: pid -> identity id, built from every crop but the held-out first."""
    run = tmp_path_factory.mktemp("run")
    db = run / "reid.db"
    ids: dict[int, int] = {}
    with Gallery.open(str(db), GalleryConfig()) as g:
        sources = {
            c: g.begin_source(name, f"generated-{name}").source_id for c, name in CAMERAS.items()
        }
        for pid, cams in people.items():
            iid = g.create_identity()
            ids[pid] = iid
            for c, files in cams.items():
                imgs = [cv2.imread(str(f)) for f in files[1:]]
                f0 = 100 * pid + 40 * c
                boxes = [
                    TrackedBox(
                        CAMERAS[c],
                        f0 + 5 * k,
                        (f0 + 5 * k) / 10.0,
                        (10.0, 10.0, 74.0, 138.0),
                        0.9,
                        pid,
                    )
                    for k in range(len(imgs))
                ]
                tr = Tracklet(CAMERAS[c], pid, boxes, imgs, [b.frame_index for b in boxes], True)
                tid = g.record_tracklet(sources[c], tr, identity_id=iid, score=0.9)
                vecs = embedder.embed_crops(imgs)
                g.add_exemplars(iid, vecs, model.model_version, tid, keep=5)
    return db, ids


def _full_frame(pid: int, out: Path) -> tuple[Path, tuple[int, int, int, int]]:
    """A street 'photo' with person ``pid`` walking in it (not a crop: the detector must find
    them), in daylight unlike either camera. Returns the file and the person's true box."""
    from reid_pipeline.datasets.scene import (
        composite,
        make_background,
        random_people,
        render_person,
    )

    app = random_people(PEOPLE, SEED)[pid - 1]  # the same people make_crops_dataset draws
    frame = make_background("street", 640, 360, 3)
    rgb, alpha = render_person(app, 180, 0.0, 1)
    box = composite(frame, rgb, alpha, 380, 340 - alpha.shape[0])
    assert box is not None
    assert cv2.imwrite(str(out), frame)
    return out, box


def test_search_finds_the_right_identity_from_crops(built, people, model, embedder) -> None:
    db, ids = built
    with Gallery.open(str(db), GalleryConfig()) as g:
        ranks = []
        for pid, cams in people.items():
            for files in cams.values():
                res = search_photo(g, files[0], model, embedder, None, top=PEOPLE, mode="crop")
                assert res.mode == "crop" and res.scored == PEOPLE
                assert [h.rank for h in res.hits] == list(range(1, PEOPLE + 1))
                probs = [h.probability for h in res.hits]
                assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
                ranks.append([h.identity for h in res.hits].index(ids[pid]) + 1)
                # the hit says where and when: one entry per camera, with sightings counted
                top = res.hits[0]
                assert {c.camera for c in top.cameras} == set(CAMERAS.values())
                assert all(c.sightings == 3 and c.tracklets == 1 for c in top.cameras)
                assert top.thumbnail is not None and top.thumbnail.is_file()
    assert_found(ranks)


def assert_found(ranks: list[int]) -> None:
    """The right identity comes first for most queries and near the top for the others.

    Chance would put it first for 1 query in 6 (mean reciprocal rank ~0.41); a search that
    mixed up identities, ignored the photo or the model would land there. The default model
    was trained on real Market-1501 people, never on generated ones, so a few misses at
    rank 2-3 are its domain gap, not the search's fault.
    """
    first = sum(r == 1 for r in ranks)
    mrr = sum(1.0 / r for r in ranks) / len(ranks)
    assert first >= 0.6 * len(ranks) and mrr >= 0.75, f"ranks of the right identity: {ranks}"


def test_search_detects_the_person_in_a_full_frame(
    built, people, model, embedder, tmp_path
) -> None:
    from reid_pipeline.config import DetectorConfig
    from reid_pipeline.detect import build_detector

    db, ids = built
    det = build_detector(DetectorConfig(kind="hog"), "cpu")
    ranks = []
    with Gallery.open(str(db), GalleryConfig()) as g:
        for pid in sorted(people):
            photo, (tx1, ty1, tx2, ty2) = _full_frame(pid, tmp_path / f"street{pid}.jpg")
            res = search_photo(g, photo, model, embedder, det, top=PEOPLE, mode="auto")
            assert res.mode == "frame" and res.box is not None
            x1, y1, x2, y2 = res.box
            assert x1 < (tx1 + tx2) / 2 < x2 and y1 < (ty1 + ty2) / 2 < y2  # on the person
            ranks.append([h.identity for h in res.hits].index(ids[pid]) + 1)
    assert_found(ranks)
    page = write_result_html(res, tmp_path / "page" / "result.html")
    html = page.read_text()
    assert html.count('class="card" data-identity=') == PEOPLE
    assert "data:image/jpeg;base64," in html and "http" not in html


def test_bad_photos_give_clear_errors(tmp_path, built, model, embedder) -> None:
    from reid_pipeline.config import DetectorConfig
    from reid_pipeline.detect import build_detector

    with pytest.raises(InputError, match=r"photo '.*nope\.jpg' does not exist"):
        read_photo(tmp_path / "nope.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a picture")
    with pytest.raises(InputError, match="junk.jpg' is not a readable image"):
        read_photo(junk)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not a readable image"):
        read_photo(empty)
    with pytest.raises(InputError, match="is not a file"):
        read_photo(tmp_path)
    # a landscape picture of an empty wall: no person, and not shaped like a crop
    wall = tmp_path / "wall.png"
    grad = np.tile(np.linspace(40, 200, 640, dtype=np.uint8), (360, 1))
    assert cv2.imwrite(str(wall), cv2.merge([grad, grad, grad]))
    det = build_detector(DetectorConfig(kind="hog"), "cpu")
    with pytest.raises(InputError, match="wall.png' *: no person found"):
        person_crop(read_photo(wall), det, "auto", str(wall))
    db, _ = built
    with (
        Gallery.open(str(db), GalleryConfig()) as g,
        pytest.raises(InputError, match="no person found"),
    ):
        search_photo(g, wall, model, embedder, det, mode="frame")


def test_crop_shape_and_ranking_rules() -> None:
    assert looks_like_crop(np.zeros((128, 64, 3), np.uint8))
    assert not looks_like_crop(np.zeros((360, 640, 3), np.uint8))
    ranked = rank_identities(np.array([0.2, 0.9, 0.4, 0.9, 0.1]), np.array([3, 3, 1, 2, 5]))
    assert ranked == [(2, 0.9), (3, 0.9), (1, 0.4), (5, 0.1)]


def test_model_version_mismatch_is_refused(built, people, embedder) -> None:
    from reid_pipeline.embed.model import ReIDModel

    db, _ = built
    other = ReIDModel("osnet_x0_25", embed_dim=128, height=128, width=64).eval()
    with (
        Gallery.open(str(db), GalleryConfig()) as g,
        pytest.raises(InputError, match="made by model.*--checkpoint"),
    ):
        search_photo(g, people[1][1][0], other, embedder, None, mode="crop")


def test_cli_search(built, people, model, embedder, tmp_path, capsys) -> None:
    db, _ = built
    model_args = ["--device", "cpu", "--detector", "hog"]  # the default model
    pid = sorted(people)[2]
    photo = people[pid][1][0]
    html = tmp_path / "out.html"
    assert (
        main(
            ["search", str(photo), "--db", str(db), "--top", "2", "--html", str(html), *model_args]
        )
        == 0
    )
    out = capsys.readouterr().out
    # the command prints what the library finds for the same photo, in the same order
    with Gallery.open(str(db), GalleryConfig()) as g:
        expect = search_photo(g, photo, model, embedder, None, top=2, mode="crop")
    capsys.readouterr()  # (its log lines)
    listed = [line.split()[1] for line in out.splitlines() if re.match(r"\s+\d\.", line)]
    assert listed == [f"#{h.identity}" for h in expect.hits]
    assert f"p={expect.hits[0].probability:.3f}" in out
    assert "taken whole as a person crop" in out
    assert "indoor:" in out and "street:" in out
    assert html.is_file() and html.read_text().count("data-rank=") == 2

    # bad inputs: one line each, naming the input, exit code 2, before any model is loaded
    for args, pattern in [
        (["search", str(tmp_path / "missing.jpg"), "--db", str(db)], "missing.jpg' does not exist"),
        (
            ["search", str(people[pid][1][0]), "--db", str(tmp_path / "no.db")],
            "no.db' does not exist",
        ),
    ]:
        assert main([*args, *model_args]) == 2
        err = capsys.readouterr().err
        assert re.search(pattern, err), err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_main_entry_reports_unreadable_photo(tmp_path, capsys) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    assert main(["search", str(bad), "--db", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "x.jpg' is not a readable image" in err


def test_a_crop_shaped_photo_is_taken_whole(people) -> None:
    """A person crop through the detector: its box would only trim the crop's margin."""
    from reid_pipeline.config import DetectorConfig
    from reid_pipeline.detect import build_detector

    det = build_detector(DetectorConfig(kind="hog"), "cpu")
    img = read_photo(people[1][1][0])
    crop, box, mode = person_crop(img, det, "auto", "crop.jpg")
    assert mode == "crop" and box is None and crop.shape == img.shape
