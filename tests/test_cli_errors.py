"""`reid process` bad inputs: one clear `error:` line naming the input, exit code 2, and
nothing written to (or lost from) an existing gallery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_pipeline.cli import main


def _video(path: Path, frames: int = 12, size: tuple[int, int] = (96, 64)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good clip, a checkpoint that loads (random init, tiny), and broken files."""
    from reid_pipeline.embed.model import ReIDModel, export_fp16

    d = tmp_path_factory.mktemp("media")
    good = _video(d / "good.mp4", 40)
    blob = good.read_bytes()
    (d / "truncated.mp4").write_bytes(blob[: len(blob) // 2])
    (d / "notvideo.mp4").write_text("this is not a video\n")
    zero = cv2.VideoWriter(str(d / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    zero.release()
    model = ReIDModel("osnet_x0_25", num_classes=2, embed_dim=16, height=64, width=32)
    export_fp16(d / "tiny.pt", model)
    (d / "corrupt.pt").write_bytes(b"\x80\x04garbage" * 10)
    torch_zip = d / "wrong.pt"
    import torch

    torch.save({"format": "something else", "weights": torch.zeros(3)}, torch_zip)
    return {
        "good": good,
        "truncated": d / "truncated.mp4",
        "notvideo": d / "notvideo.mp4",
        "zero": d / "zero.mp4",
        "tiny": d / "tiny.pt",
        "corrupt": d / "corrupt.pt",
        "wrong": torch_zip,
    }


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("error:")]
    return rc, errors[-1] if errors else "\n".join(err)


def _base(media: dict[str, Path], out: Path) -> list[str]:
    return [
        "--out",
        str(out),
        "--detector",
        "hog",
        "--checkpoint",
        str(media["tiny"]),
        "--set",
        "model.backbone=osnet_x0_25",
        "--device",
        "cpu",
    ]


@pytest.mark.parametrize(
    "name, needle",
    [
        ("missing", "does not exist"),
        ("notvideo", "cannot be opened"),
        ("zero", "zero.mp4"),
    ],
)
def test_bad_video_at_open(
    name: str,
    needle: str,
    media: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "missing.mp4" if name == "missing" else media[name]
    rc, msg = _run(["process", str(path), *_base(media, tmp_path / "out")], capsys)
    assert rc == 2
    assert msg.startswith("error:") and str(path) in msg and needle in msg
    assert not (tmp_path / "out" / "reid.db").exists()  # failed before any database write


def test_truncated_video_names_file_and_keeps_work(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, msg = _run(["process", str(media["truncated"]), *_base(media, tmp_path / "out")], capsys)
    assert rc == 2
    assert msg.startswith("error:") and "truncated.mp4" in msg


def _avi(path: Path, frames: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        w.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    w.release()
    return path


@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_video_breaking_off_midway_with_other_cameras(
    policy: str, media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera whose video breaks off mid-way: its decoded frames are kept and the source
    stays resumable; with input.on_error=continue the other camera still finishes and the
    outputs are written, with stop the run ends at once. Either way: one error naming it."""
    cut = _avi(tmp_path / "cut.avi", 60)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    good = _avi(tmp_path / "good.avi", 60)
    out = tmp_path / "out"
    rc, msg = _run(
        [
            "process",
            str(cut),
            str(good),
            "--camera",
            "dock",
            "--camera",
            "gate",
            *_base(media, out),
            "--set",
            "detector.batch=2",
            "--set",
            f"input.on_error={policy}",
        ],
        capsys,
    )
    assert rc == 2 and msg.startswith("error:") and "cut.avi" in msg, msg
    con = sqlite3.connect(out / "reid.db")
    rows = dict(
        con.execute(
            "select c.name, s.frames_processed || ' ' || s.status from "
            "sources s join cameras c on c.id = s.camera_id"
        ).fetchall()
    )
    con.close()
    cut_done, cut_status = rows["dock"].split()
    assert cut_status != "done" and 10 <= int(cut_done) < 60, rows
    if policy == "continue":
        assert rows["gate"] == "60 done", rows
        assert "camera dock" in msg and "other cameras finished" in msg
        assert (out / "sightings.csv").is_file() and (out / "videos" / "gate.webm").is_file()
    else:
        assert not rows["gate"].endswith("done"), rows


def test_fps_flag_sets_timestamps_of_a_frame_folder(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reid_pipeline.config import load_config
    from reid_pipeline.pipeline.recorded import CameraInput, open_input

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.zeros((64, 96, 3), np.uint8))
    cfg = load_config(None, {"input.fps": 25.0})
    src = open_input(CameraInput(str(folder), "f"), cfg)
    assert [f.timestamp for f in src] == pytest.approx([0.0, 0.04, 0.08])
    rc, msg = _run(
        ["process", str(folder), *_base(media, tmp_path / "out"), "--fps", "0.01"], capsys
    )
    assert rc == 2 and "input.fps" in msg


def test_camera_count_mismatch(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, msg = _run(
        [
            "process",
            str(media["good"]),
            str(media["good"]),
            "--camera",
            "lobby",
            *_base(media, tmp_path / "out"),
        ],
        capsys,
    )
    assert rc == 2
    assert msg.startswith("error:") and "--camera" in msg and "2 input" in msg


def test_same_camera_twice(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, msg = _run(
        [
            "process",
            str(media["good"]),
            str(media["good"]),
            "--camera",
            "a",
            "--camera",
            "a",
            *_base(media, tmp_path / "out"),
        ],
        capsys,
    )
    assert rc == 2 and "'a'" in msg


def test_unknown_detector(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, msg = _run(
        ["process", str(media["good"]), *_base(media, tmp_path / "out"), "--detector", "magic"],
        capsys,
    )
    assert rc == 2 and "detector.kind" in msg and "magic" in msg


@pytest.mark.parametrize(
    "setting, key",
    [
        ("detector.conf=1.5", "detector.conf"),
        ("match.threshold=abc", "match.threshold"),
        ("tracker.nonsense=1", "tracker.nonsense"),
    ],
)
def test_bad_config_value_names_key(
    setting: str,
    key: str,
    media: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, msg = _run(
        ["process", str(media["good"]), *_base(media, tmp_path / "out"), "--set", setting], capsys
    )
    assert rc == 2 and key in msg


def test_bad_config_file_names_key(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gallery:\n  batch_size: 0\n")
    rc, msg = _run(
        ["process", str(media["good"]), *_base(media, tmp_path / "out"), "--config", str(cfg)],
        capsys,
    )
    assert rc == 2 and "gallery.batch_size" in msg


@pytest.mark.parametrize("which", ["corrupt", "wrong", "absent"])
def test_bad_weights(
    which: str, media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.pt" if which == "absent" else media[which]
    args = ["process", str(media["good"]), *_base(media, tmp_path / "out")]
    args[args.index("--checkpoint") + 1] = str(path)
    rc, msg = _run(args, capsys)
    assert rc == 2 and msg.startswith("error:") and str(path) in msg
    assert not (tmp_path / "out" / "reid.db").exists()


def test_database_unreachable_redacted(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:9/test"  # nothing listens on port 9
    rc, msg = _run(
        ["process", str(media["good"]), *_base(media, tmp_path / "out"), "--db", url], capsys
    )
    assert rc == 2 and "127.0.0.1:9" in msg and "s3cret" not in msg
    # the run's resolved config is written first, with the credential redacted
    written = (tmp_path / "out" / "config.yaml").read_text()
    assert "127.0.0.1:9" in written and "s3cret" not in written


def test_database_locked_keeps_rows(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, _ = _run(
        [
            "process",
            str(media["good"]),
            "--camera",
            "c1",
            *_base(media, out),
            "--no-video",
            "--no-html",
        ],
        capsys,
    )
    assert rc == 0
    from reid_pipeline.config import load_config

    resolved = load_config(out / "config.yaml")  # beside the outputs: the config as it ran
    assert resolved.output.out == str(out) and resolved.output.video is False
    db = out / "reid.db"
    before = sqlite3.connect(db).execute("select count(*) from sources").fetchone()[0]
    assert before == 1
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        other = _video(tmp_path / "other.mp4", 8)
        rc, msg = _run(
            [
                "process",
                str(other),
                "--camera",
                "c2",
                *_base(media, out),
                "--set",
                "gallery.busy_timeout_s=0.2",
            ],
            capsys,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rc == 2 and "locked" in msg and str(db) in msg
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from sources").fetchone()[0] == before
    assert con.execute("select status from sources").fetchone()[0] == "done"


def test_output_folder_not_writable(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "run"  # a folder below a regular file cannot exist (even for root)
    rc, msg = _run(["process", str(media["good"]), *_base(media, out)], capsys)
    assert rc == 2 and "output folder" in msg and str(out) in msg


def _commands() -> list[list[str]]:
    """Every command and every `reid gallery` action, as argv prefixes."""
    import argparse

    from reid_pipeline.cli import build_parser

    def subs(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                return dict(a.choices)
        return {}

    out: list[list[str]] = []
    for name, p in subs(build_parser()).items():
        actions = subs(p)
        out += [[name, a] for a in actions] if actions else [[name]]
    return out


def test_help_shows_readable_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    """`reid <cmd> --help` never shows an internal dest (`--device CFG__DEVICE`)."""
    cmds = _commands()
    assert ["bench"] in cmds and ["gallery", "delete"] in cmds and len(cmds) >= 15
    for argv in cmds:
        with pytest.raises(SystemExit) as ex:
            main([*argv, "--help"])
        assert ex.value.code == 0
        text = capsys.readouterr().out
        assert "usage: reid " + " ".join(argv) in text.replace("\n", " ").replace("  ", " ")
        assert "CFG__" not in text.upper(), (argv, text)
        assert "--device DEVICE" in text and "--log-level LEVEL" in text, argv


def test_setting_of_another_command_is_refused(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, msg = _run(
        [
            "process",
            str(media["good"]),
            *_base(media, tmp_path / "out"),
            "--set",
            "manage.yes=true",
        ],
        capsys,
    )
    assert rc == 2 and "manage.yes" in msg and "reid gallery" in msg
    assert not (tmp_path / "out" / "reid.db").exists()
