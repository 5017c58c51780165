"""Dataset loaders on generated tiny layouts (never the shared real data)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_pipeline.datasets.market import load_dataset, parse_name, read_image, read_images, relabel
from reid_pipeline.errors import InputError
from reid_pipeline.types import ImageRecord


def _jpg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (16, 8, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def _market(root: Path) -> Path:
    d = root / "Market-1501-v15.09.15"
    for name in (
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000001_01.jpg",
        "-1_c1s1_000001_00.jpg",
    ):
        _jpg(d / "bounding_box_train" / name)
    for name in ("0010_c1s1_000001_00.jpg", "0011_c6s2_000001_00.jpg", "-1_c2s1_000001_00.jpg"):
        _jpg(d / "query" / name)
    for name in (
        "0010_c2s1_000002_00.jpg",
        "0011_c1s1_000009_00.jpg",
        "0000_c3s1_000001_00.jpg",
        "-1_c4s1_000001_00.jpg",
    ):
        _jpg(d / "bounding_box_test" / name)
    (d / "bounding_box_test" / "Thumbs.db").write_bytes(b"x")
    return d


@pytest.mark.parametrize("level", ["outer", "inner"])
def test_market_layout_with_or_without_version_level(tmp_path: Path, level: str) -> None:
    inner = _market(tmp_path)
    ds = load_dataset(tmp_path if level == "outer" else inner)
    assert ds.name == "market1501"
    assert ds.root == str(inner)
    # junk (-1) dropped everywhere; distractor (0) kept in the gallery
    assert sorted(r.pid for r in ds.train) == [2, 2, 7]
    assert sorted(r.pid for r in ds.query) == [10, 11]
    assert sorted(r.pid for r in ds.gallery) == [0, 10, 11]
    assert ds.num_train_pids == 2
    q = {Path(r.path).name: r for r in ds.query}
    assert q["0011_c6s2_000001_00.jpg"].camid == 5  # c6 -> 5: 0-based
    assert q["0010_c1s1_000001_00.jpg"].camid == 0
    ds.require_test()


def test_duke_layout_named(tmp_path: Path) -> None:
    d = tmp_path / "DukeMTMC-reID"
    _jpg(d / "bounding_box_train" / "0001_c2_f0046182.jpg")
    _jpg(d / "query" / "0005_c8_f0000001.jpg")
    _jpg(d / "bounding_box_test" / "0005_c1_f0000002.jpg")
    ds = load_dataset(tmp_path)
    assert ds.name == "dukemtmcreid"
    assert ds.query[0].camid == 7 and ds.train[0].pid == 1


def test_msmt_layout(tmp_path: Path) -> None:
    base = tmp_path / "MSMT17_V1"
    _jpg(base / "train" / "0000" / "0000_000_01_0303morning_0015_0.jpg")
    _jpg(base / "train" / "0001" / "0001_000_05_0303morning_0016_0.jpg")
    _jpg(base / "test" / "0000" / "0000_000_14_0303morning_0017_0.jpg")
    _jpg(base / "test" / "0000" / "0000_001_02_0303morning_0018_0.jpg")
    (base / "list_train.txt").write_text(
        "0000/0000_000_01_0303morning_0015_0.jpg 0\n0001/0001_000_05_0303morning_0016_0.jpg 1\n"
    )
    (base / "list_query.txt").write_text("0000/0000_000_14_0303morning_0017_0.jpg 0\n")
    (base / "list_gallery.txt").write_text("0000/0000_001_02_0303morning_0018_0.jpg 0\n")
    ds = load_dataset(tmp_path)
    assert ds.name == "msmt17"
    assert [r.camid for r in ds.train] == [0, 4]
    assert ds.query[0].camid == 13 and ds.gallery[0].camid == 1
    assert Path(ds.gallery[0].path).is_file()


def test_msmt_bad_line_names_file(tmp_path: Path) -> None:
    base = tmp_path / "MSMT17_V1"
    (base / "train").mkdir(parents=True)
    (base / "test").mkdir()
    (base / "list_train.txt").write_text("garbage\n")
    with pytest.raises(InputError, match="list_train.txt:1"):
        load_dataset(tmp_path)


def test_generic_split_folders_and_camera_mapping(tmp_path: Path) -> None:
    _jpg(tmp_path / "train" / "3_0_a.jpg")
    _jpg(tmp_path / "train" / "4_2_b.jpg")
    _jpg(tmp_path / "query" / "0005_c1_x.jpg")
    _jpg(tmp_path / "gallery" / "5_2_y.png")
    (tmp_path / "gallery" / "notes.txt").write_text("not an image")
    _jpg(tmp_path / "gallery" / "unnamed.jpg")
    ds = load_dataset(tmp_path)
    assert ds.name == "folder"
    assert ds.skipped == 1  # unnamed.jpg: counted, not fatal
    # camera numbers 0, 1, 2 over all splits -> ids 0, 1, 2 consistently
    assert {Path(r.path).name: r.camid for r in ds.train} == {"3_0_a.jpg": 0, "4_2_b.jpg": 2}
    assert ds.query[0].camid == 1 and ds.gallery[0].camid == 2


def test_flat_folder_is_train_only(tmp_path: Path) -> None:
    _jpg(tmp_path / "1_1_a.jpg")
    _jpg(tmp_path / "2_2_a.jpg")
    ds = load_dataset(tmp_path)
    assert len(ds.train) == 2 and not ds.query and not ds.gallery
    ds.require_train()
    with pytest.raises(InputError, match="no query images"):
        ds.require_test()


def test_wrong_root_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "something").mkdir()
    with pytest.raises(InputError, match="bounding_box_train/query/bounding_box_test"):
        load_dataset(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(InputError, match="no dataset root given"):
        load_dataset("")  # not the current directory


def test_partial_market_names_missing_folder(tmp_path: Path) -> None:
    d = _market(tmp_path)
    for p in (d / "query").iterdir():
        p.unlink()
    (d / "query").rmdir()
    with pytest.raises(InputError, match="not query"):
        load_dataset(tmp_path)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    d = _market(tmp_path)
    for p in (d / "bounding_box_test").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="'gallery'.*bounding_box_test"):
        load_dataset(tmp_path)


def test_read_image_and_undecodable(tmp_path: Path) -> None:
    good = tmp_path / "1_c1_a.jpg"
    _jpg(good)
    bad = tmp_path / "1_c1_b.jpg"
    bad.write_bytes(b"not a jpeg")
    empty = tmp_path / "1_c1_c.jpg"
    empty.write_bytes(b"")
    img = read_image(good)
    assert img.dtype == np.uint8 and img.shape == (16, 8, 3)
    for p in (bad, empty, tmp_path / "missing.jpg"):
        with pytest.raises(InputError, match=p.name):
            read_image(p)
    images, failed = read_images([good, bad, good, empty])
    assert len(images) == 2 and failed == [1, 3]


def test_relabel_contiguous_sorted() -> None:
    recs = [ImageRecord("a", 40, 0), ImageRecord("b", 7, 1), ImageRecord("c", 40, 2)]
    out, mapping = relabel(recs)
    assert mapping == {7: 0, 40: 1}
    assert [r.pid for r in out] == [1, 0, 1] and [r.camid for r in out] == [0, 1, 2]


def test_parse_name() -> None:
    assert parse_name("0002_c1s1_000451_03.jpg") == (2, 1, True)
    assert parse_name("-1_c3s2_000001_00.jpg") == (-1, 3, True)
    assert parse_name("12_3_0001.jpg") == (12, 3, False)
    assert parse_name("img_0001.jpg") is None
