"""`reid evaluate-mot` and the MOT files of `reid process` (issue 13).

Our scoring must equal py-motmetrics' own answer: on small hand-made sequences (perfect
tracks, one switch, one missed person, ignored regions), on the library's published
reference numbers for its bundled TUD-Campus / TUD-Stadtmitte data, and on what the
pipeline writes end to end. Bad inputs are one-line errors naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from reid_pipeline.cli import main
from reid_pipeline.evaluate.mot import (
    METRICS,
    evaluate,
    read_gt,
    read_result,
    read_seqinfo,
    sequence_frames,
)

mm = pytest.importorskip("motmetrics")
# the library's own loader (reference answers only) on pandas 3
pytestmark = pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")

# ---------------------------------------------------------------- helpers


def _write_seq(
    root: Path,
    gt_rows: list[str],
    length: int = 6,
    name: str = "TOY",
    det_rows: list[str] | None = None,
    size: tuple[int, int] = (200, 150),
    images: int = 0,
) -> Path:
    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate=10\nseqLength={length}\n"
        f"imWidth={size[0]}\nimHeight={size[1]}\nimExt=.jpg\n"
    )
    (root / "gt" / "gt.txt").write_text("".join(r + "\n" for r in gt_rows))
    if det_rows is not None:
        (root / "det").mkdir(exist_ok=True)
        (root / "det" / "det.txt").write_text("".join(r + "\n" for r in det_rows))
    return root


def _box(person: int, frame: int) -> tuple[float, float, float, float]:
    """Two people: 1 walks right, 2 stands (x, y, w, h)."""
    if person == 1:
        return 20.0 + 8 * frame, 30.0, 30.0, 70.0
    return 130.0, 40.0, 32.0, 72.0


def _gt15(frames: int = 6, extra: list[str] | None = None) -> list[str]:
    rows = []
    for f in range(1, frames + 1):
        for p in (1, 2):
            x, y, w, h = _box(p, f)
            rows.append(f"{f},{p},{x},{y},{w},{h},1,-1,-1,-1")
    return rows + (extra or [])


def _res(rows: list[tuple[int, int, int]], shift: float = 0.0) -> list[str]:
    """(frame, person, id) -> MOT result rows on the person's box (+shift px)."""
    out = []
    for f, p, i in rows:
        x, y, w, h = _box(p, f)
        out.append(f"{f},{i},{x + shift},{y},{w},{h},0.9,-1,-1,-1")
    return out


@pytest.fixture
def asfarray(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own loaders call np.asfarray, which NumPy 2 removed: give it back for
    the reference computations only (our code does not need it)."""
    if not hasattr(np, "asfarray"):
        monkeypatch.setattr(
            np, "asfarray", lambda a, dtype=np.float64: np.asarray(a, dtype), raising=False
        )


def _library(
    gt: Path, res: Path, fmt: str = "mot15-2D", seqinfo: Path | None = None
) -> dict[str, Any]:
    """py-motmetrics' own answer: its MOTChallenge loader and matching (eval_motchallenge's
    path; with ``seqinfo`` its MOT16 path CLEAR_MOT_M, which drops predictions on
    distractors)."""
    if seqinfo is None:
        g = mm.io.loadtxt(str(gt), fmt=fmt, min_confidence=1)
        acc = mm.utils.compare_to_groundtruth(
            g, mm.io.loadtxt(str(res), fmt=fmt), "iou", distth=0.5
        )
    else:
        acc, _ = mm.utils.CLEAR_MOT_M(
            mm.io.loadtxt(str(gt), fmt=fmt),
            mm.io.loadtxt(str(res), fmt=fmt),
            str(seqinfo),
            "iou",
            distth=0.5,
        )
    return mm.metrics.create().compute(acc, metrics=METRICS, return_dataframe=False)


def _assert_same(ours: dict[str, Any], lib: dict[str, Any]) -> None:
    for k in METRICS:
        a, b = ours[k], float(lib[k])
        if a is None:
            assert math.isnan(b), k
        else:
            assert a == pytest.approx(b, abs=1e-9), k


def _score(seq: Path, res_rows: list[str], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    res = tmp_path / "res.txt"
    res.write_text("".join(r + "\n" for r in res_rows))
    info = read_seqinfo(seq)
    return evaluate(read_gt(info.gt_path, info), read_result(res), (1, info.length)), res


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    return rc, cap.out, errors[-1] if errors else cap.err


# ---------------------------------------------------------------- equals the library


def test_perfect_tracks(tmp_path: Path, asfarray: None) -> None:
    seq = _write_seq(tmp_path / "seq", _gt15())
    m, res = _score(seq, _res([(f, p, 10 + p) for f in range(1, 7) for p in (1, 2)]), tmp_path)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_switches"] == 0
    assert m["mostly_tracked"] == 2 and m["motp_iou"] == pytest.approx(1.0)
    _assert_same(m, _library(seq / "gt" / "gt.txt", res))


def test_one_switch(tmp_path: Path, asfarray: None) -> None:
    seq = _write_seq(tmp_path / "seq", _gt15())
    rows = [(f, 1, 11 if f < 4 else 13) for f in range(1, 7)] + [(f, 2, 12) for f in range(1, 7)]
    m, res = _score(seq, _res(rows), tmp_path)
    assert m["num_switches"] == 1 and m["mota"] == pytest.approx(1 - 1 / 12)
    assert m["idf1"] == pytest.approx(9 / 12)
    _assert_same(m, _library(seq / "gt" / "gt.txt", res))


def test_one_missed_person(tmp_path: Path, asfarray: None) -> None:
    seq = _write_seq(tmp_path / "seq", _gt15())
    m, res = _score(seq, _res([(f, 1, 5) for f in range(1, 7)], shift=2.0), tmp_path)
    assert m["num_misses"] == 6 and m["mota"] == pytest.approx(0.5)
    assert m["mostly_lost"] == 1 and m["mostly_tracked"] == 1 and m["recall"] == 0.5
    assert m["motp_iou"] < 1.0  # the 2 px shift
    _assert_same(m, _library(seq / "gt" / "gt.txt", res))


def test_ignored_region_mot15(tmp_path: Path, asfarray: None) -> None:
    """A gt row with flag 0 is an ignored region: a prediction on it is neither TP nor FP;
    one on nothing is a FP. The library's answer for the same file without the prediction
    on the ignored region must come out."""
    seq = _write_seq(tmp_path / "seq", _gt15(extra=["3,9,60,80,30,60,0,-1,-1,-1"]))
    base = [(f, p, 10 + p) for f in range(1, 7) for p in (1, 2)]
    on_ignored = "3,7,61,80,30,60,0.9,-1,-1,-1"
    on_nothing = "4,8,5,5,20,20,0.9,-1,-1,-1"
    m, _ = _score(seq, [*_res(base), on_ignored, on_nothing], tmp_path)
    assert m["num_ignored"] == 1 and m["num_false_positives"] == 1
    assert m["num_objects"] == 12  # the ignored row is no person to find
    without = tmp_path / "without.txt"
    without.write_text("".join(r + "\n" for r in [*_res(base), on_nothing]))
    _assert_same(m, _library(seq / "gt" / "gt.txt", without))


def test_ignored_region_mot16_classes(tmp_path: Path, asfarray: None) -> None:
    """MOT16+ ground truth (flag, class, visibility): the library's MOTChallenge path
    (CLEAR_MOT_M) drops predictions on distractors and scores pedestrians only."""
    rows = [r.rsplit(",", 3)[0] + ",1,1.0" for r in _gt15()]  # pedestrians, fully visible
    rows += [
        "2,20,60,80,30,60,0,8,0.4",  # a distractor, flag 0
        "5,21,10,100,40,30,0,3,1.0",
    ]  # a car, flag 0: not a person
    seq = _write_seq(tmp_path / "seq", rows)
    base = _res([(f, p, 10 + p) for f in range(1, 7) for p in (1, 2)])
    res_rows = [
        *base,
        "2,7,60,80,30,60,0.9,-1,-1,-1",  # on the distractor: dropped
        "5,8,10,100,40,30,0.9,-1,-1,-1",
    ]  # on the car: a false positive
    m, res = _score(seq, res_rows, tmp_path)
    info = read_seqinfo(seq)
    assert read_gt(info.gt_path, info).fmt == "mot16"
    assert (
        m["num_ignored"] == 1
        and m["num_false_positives"] == 1
        and m["mota"] == pytest.approx(1 - 1 / 12)
    )
    _assert_same(m, _library(seq / "gt" / "gt.txt", res, fmt="mot16", seqinfo=seq / "seqinfo.ini"))


def test_frames_restrict_scoring(tmp_path: Path, asfarray: None) -> None:
    seq = _write_seq(tmp_path / "seq", _gt15())
    res = tmp_path / "res.txt"
    res.write_text("".join(r + "\n" for r in _res([(f, 1, 3) for f in range(1, 7)])))
    info = read_seqinfo(seq)
    m = evaluate(read_gt(info.gt_path, info), read_result(res), sequence_frames("2:4", info))
    assert m["num_objects"] == 6 and m["num_misses"] == 3 and m["num_matches"] == 3


def test_library_reference_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """py-motmetrics' published figures for its own test data (motmetrics/data, checked in
    motmetrics/tests/test_metrics.py::test_motchallenge_files), through `reid evaluate-mot
    --result`."""
    data = Path(mm.__file__).parent / "data"
    if not (data / "TUD-Campus" / "gt.txt").is_file():
        pytest.skip("this motmetrics wheel has no bundled test data")
    # idf1 idp idr recall precision GT MT PT ML FP FN IDsw FM MOTA MOTP
    expected = {
        "TUD-Campus": [
            0.557659,
            0.729730,
            0.451253,
            0.582173,
            0.941441,
            8,
            1,
            6,
            1,
            13,
            150,
            7,
            7,
            0.526462,
            0.277201,
        ],
        "TUD-Stadtmitte": [
            0.644619,
            0.819760,
            0.531142,
            0.608997,
            0.939920,
            10,
            5,
            4,
            1,
            45,
            452,
            7,
            6,
            0.564014,
            0.345904,
        ],
    }
    keys = [
        "idf1",
        "idp",
        "idr",
        "recall",
        "precision",
        "num_unique_objects",
        "mostly_tracked",
        "partially_tracked",
        "mostly_lost",
        "num_false_positives",
        "num_misses",
        "num_switches",
        "num_fragmentations",
        "mota",
        "motp",
    ]
    for name, want in expected.items():
        rows = (data / name / "gt.txt").read_text().splitlines()
        length = max(int(r.split(",")[0]) for r in rows if r.strip())
        seq = _write_seq(tmp_path / name, rows, length=length, name=name)
        out = tmp_path / f"out-{name}"
        rc, stdout, err = _cli(
            [
                "evaluate-mot",
                str(seq),
                "--result",
                str(data / name / "test.txt"),
                "--out",
                str(out),
            ],
            capsys,
        )
        assert rc == 0, err
        assert "MOTA" in stdout and name in stdout
        got = json.loads((out / "metrics.json").read_text())["metrics"]["result"]
        assert [got[k] for k in keys] == pytest.approx(want, abs=1e-3), name


# ---------------------------------------------------------------- bad inputs


def _bad(args: list[str], capsys: pytest.CaptureFixture[str], needle: str) -> None:
    rc, _, err = _cli(["evaluate-mot", *args], capsys)
    assert rc == 2 and err.startswith("error:") and needle in err, err
    assert "\n" not in err


def test_bad_inputs_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seq = _write_seq(tmp_path / "seq", _gt15())
    res = tmp_path / "res.txt"
    res.write_text("".join(r + "\n" for r in _res([(1, 1, 1)])))
    out = ["--out", str(tmp_path / "out"), "--result", str(res)]

    empty = tmp_path / "empty"
    empty.mkdir()
    _bad([str(empty), *out], capsys, str(empty / "seqinfo.ini"))
    _bad([str(tmp_path / "nowhere"), *out], capsys, "nowhere")

    short = _write_seq(tmp_path / "short", [*_gt15(), "3,4,1,2,3"])
    _bad([str(short), *out], capsys, str(short / "gt" / "gt.txt"))
    mixed = _write_seq(tmp_path / "mixed", [*_gt15(), "3,4,1,2,3,4,1,1,1"])
    _bad([str(mixed), *out], capsys, str(mixed / "gt" / "gt.txt"))
    beyond = _write_seq(tmp_path / "beyond", _gt15(frames=7), length=6)
    _bad([str(beyond), *out], capsys, "seqLength=6")

    _bad([str(seq), *out, "--frames", "4:9"], capsys, str(seq / "seqinfo.ini"))
    _bad([str(seq), *out, "--frames", "0:3"], capsys, "mot_eval.frames")
    _bad([str(seq), *out, "--frames", "5:2"], capsys, "mot_eval.frames")

    nogt = _write_seq(tmp_path / "nogt", [])
    (nogt / "gt" / "gt.txt").unlink()
    _bad([str(nogt), *out], capsys, str(nogt / "gt" / "gt.txt"))

    dup = tmp_path / "dup.txt"
    dup.write_text("1,4,1,1,5,5,1,-1,-1,-1\n1,4,9,9,5,5,1,-1,-1,-1\n")
    _bad([str(seq), "--out", str(tmp_path / "out"), "--result", str(dup)], capsys, str(dup))
    _bad(
        [str(seq), "--out", str(tmp_path / "out"), "--result", str(tmp_path / "no.txt")],
        capsys,
        str(tmp_path / "no.txt"),
    )
    # no frames to run on, no --result
    _bad([str(seq), "--out", str(tmp_path / "out")], capsys, str(seq / "img1"))


def _video(path: Path, frames: int, size: tuple[int, int] = (200, 150)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    for _ in range(frames):
        w.write(np.full((size[1], size[0], 3), 60, np.uint8))
    w.release()
    return path


def test_video_of_another_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reid_pipeline.commands.evaluate_mot import plan_input
    from reid_pipeline.config import load_config

    seq = _write_seq(tmp_path / "seq", _gt15(frames=10), length=10)
    clip = _video(tmp_path / "clip.mp4", 7)
    _bad([str(seq), "--video", str(clip), "--out", str(tmp_path / "out")], capsys, str(clip))
    _bad(
        [str(seq), "--video", str(clip), "--frames", "2:9", "--out", str(tmp_path / "out")],
        capsys,
        "covers 8",
    )
    info = read_seqinfo(seq)
    cfg = load_config(None, {"mot_eval.video": str(clip)})
    # a clip of exactly the frames asked for: its frame 1 is gt frame 3
    assert plan_input(cfg, info, (3, 9)) == (str(clip), 2, "")
    full = _video(tmp_path / "full.mp4", 10)
    cfg = load_config(None, {"mot_eval.video": str(full)})
    assert plan_input(cfg, info, (3, 9)) == (str(full), 0, "3:9")
    assert plan_input(cfg, info, (1, 10)) == (str(full), 0, "")


def test_frame_range_source(tmp_path: Path) -> None:
    from reid_pipeline.config import load_config
    from reid_pipeline.errors import SourceError
    from reid_pipeline.pipeline.recorded import CameraInput, open_input

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    inp = CameraInput(str(folder), "c")
    src = open_input(inp, load_config(None, {"input.frames": "3:5"}))
    assert [f.index for f in src] == [2, 3, 4] and src.frame_count == 5
    assert src.fingerprint() != open_input(inp, load_config()).fingerprint()
    resumed = open_input(inp, load_config(None, {"input.frames": "3:5"}), start_frame=4)
    assert [f.index for f in resumed] == [4]
    with pytest.raises(SourceError, match="outside its 6 frames"):
        open_input(inp, load_config(None, {"input.frames": "7:9"}))


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reid_pipeline.embed.model import ReIDModel, export_fp16

    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    export_fp16(path, ReIDModel("osnet_x0_25", num_classes=2, embed_dim=16, height=64, width=32))
    return path


def _image_seq(root: Path, frames: int = 12) -> Path:
    """A sequence with real frames: two coloured people, det.txt = the gt boxes."""
    gt = _gt15(frames)
    det = [
        ",".join([r.split(",")[0], "-1", *r.split(",")[2:6], "0.9", "-1", "-1", "-1"]) for r in gt
    ]
    seq = _write_seq(root, gt, length=frames, det_rows=det)
    (root / "img1").mkdir()
    for f in range(1, frames + 1):
        img = np.full((150, 200, 3), 50, np.uint8)
        for p, colour in ((1, (40, 40, 220)), (2, (40, 200, 40))):
            x, y, w, h = (int(v) for v in _box(p, f))
            img[y : y + h, x : x + w] = colour
        cv2.imwrite(str(root / "img1" / f"{f:06d}.jpg"), img)
    return seq


def _run_args(tiny: Path) -> list[str]:
    return [
        "--checkpoint",
        str(tiny),
        "--set",
        "model.backbone=osnet_x0_25",
        "--device",
        "cpu",
        "--no-video",
        "--no-html",
        "--set",
        "tracker.min_length=2",
    ]


def test_end_to_end_with_public_detections(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str], asfarray: None
) -> None:
    """The full path: pipeline on img1/ with --detector mot (det.txt = gt) over frames
    2..11 -> <out>/mot/*.txt -> metrics.json, equal to the library on the same files."""
    seq = _image_seq(tmp_path / "seq")
    out = tmp_path / "out"
    rc, stdout, err = _cli(
        [
            "evaluate-mot",
            str(seq),
            "--detector",
            "mot",
            "--frames",
            "2:11",
            "--out",
            str(out),
            *_run_args(tiny_checkpoint),
        ],
        capsys,
    )
    assert rc == 0, err
    assert "by track" in stdout and "by identity" in stdout
    report = json.loads((out / "metrics.json").read_text())
    tracks = Path(report["results"]["by track"])
    assert tracks == out / "mot" / "TOY_2-11.tracks.txt"
    frames = {int(r.split(",")[0]) for r in tracks.read_text().splitlines()}
    assert frames and min(frames) >= 2 and max(frames) <= 11  # the pipeline stopped at 11
    for label in ("by track", "by identity"):
        m = report["metrics"][label]
        assert m["mota"] > 0.8 and m["num_switches"] == 0 and m["num_false_positives"] == 0
        # the library on the pipeline's own file, restricted to the same frames
        cut = tmp_path / "cut.txt"
        gt_cut = tmp_path / "gt_cut.txt"
        cut.write_text(Path(report["results"][label]).read_text())
        gt_cut.write_text("".join(r + "\n" for r in _gt15(12) if 2 <= int(r.split(",")[0]) <= 11))
        _assert_same(m, _library(gt_cut, cut))
    assert report["run"]["frames_processed"] == 10 and report["run"]["detector"] == "mot"


def test_process_writes_mot_files(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reid_pipeline.report.sightings import read_sightings_csv

    seq = _image_seq(tmp_path / "seq", frames=8)
    out = tmp_path / "out"
    rc, _, err = _cli(
        [
            "process",
            str(seq / "img1"),
            "--camera",
            "cam one",
            "--detector",
            "mot",
            "--mot-det",
            str(seq / "det" / "det.txt"),
            "--out",
            str(out),
            *_run_args(tiny_checkpoint),
        ],
        capsys,
    )
    assert rc == 0, err
    sightings = read_sightings_csv(out / "sightings.csv")
    tracks = (out / "mot" / "cam_one.tracks.txt").read_text().splitlines()
    idents = (out / "mot" / "cam_one.identities.txt").read_text().splitlines()
    assert sightings and len(tracks) == len(sightings)
    assert len(idents) == sum(s.identity is not None for s in sightings)
    for s, line in zip(sightings, tracks):
        v = line.split(",")
        assert len(v) == 10 and v[7:] == ["-1", "-1", "-1"]
        assert int(v[0]) == s.frame + 1 and int(v[1]) == s.track
        assert [float(x) for x in v[2:6]] == pytest.approx(
            [s.bbox[0], s.bbox[1], s.bbox[2] - s.bbox[0], s.bbox[3] - s.bbox[1]], abs=0.11
        )
    # det.txt boxes come back as they went in (no pixel shift)
    det = {
        (int(r.split(",")[0]), float(r.split(",")[2]))
        for r in (seq / "det" / "det.txt").read_text().splitlines()
    }
    assert all((int(t.split(",")[0]), float(t.split(",")[2])) in det for t in tracks)
