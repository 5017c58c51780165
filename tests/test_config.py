import pytest

from reid_pipeline.config import load_config
from reid_pipeline.errors import ConfigError


def test_defaults_validate():
    cfg = load_config()
    assert cfg.detector.kind == "auto"
    assert cfg.match.threshold == 0.9 and cfg.match.tracklet_score == "pair_mean"


def test_override_coerces_types():
    cfg = load_config(
        overrides={
            "detector.conf": "0.4",
            "tracker.max_crops": "8",
            "eval.modes": "cosine,euclidean",
        }
    )
    assert cfg.detector.conf == 0.4 and cfg.tracker.max_crops == 8
    assert cfg.eval.modes == ["cosine", "euclidean"]


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("detector.conf", 2.0, "detector.conf"),
        ("detector.kind", "sift", "detector.kind"),
        ("tracker.max_crops", "many", "tracker.max_crops"),
        ("match.threshold", 1.5, "match.threshold"),
        ("eval.modes", "cosine,manhattan", "eval.modes"),
        ("detector.nonsense", 1, "detector.nonsense"),
        ("device", "tpu", "device"),
    ],
)
def test_bad_values_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(overrides={key: value})


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  conf: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    unk = tmp_path / "unk.yaml"
    unk.write_text("detectr:\n  conf: 0.3\n")
    with pytest.raises(ConfigError, match="detectr"):
        load_config(unk)


def test_redaction():
    from reid_pipeline.utils import redact_url

    assert (
        redact_url("open rtsp://admin:s3cret@10.0.0.1/live failed")
        == "open rtsp://***@10.0.0.1/live failed"
    )
    assert (
        redact_url("postgresql+psycopg://u:p@127.0.0.1/test")
        == "postgresql+psycopg://***@127.0.0.1/test"
    )
    assert redact_url("rtsp://cam/live") == "rtsp://cam/live"


def test_default_yaml_lists_every_key_with_its_default():
    """configs/default.yaml is the documented template: it must hold exactly the schema, the
    run's (Config) and each command's own section."""
    import dataclasses
    from pathlib import Path

    import yaml

    from reid_pipeline.commands.options import COMMAND_OPTIONS
    from reid_pipeline.config import COMMAND_SECTIONS, Config

    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    own = {o.section: dataclasses.asdict(o()) for o in COMMAND_OPTIONS}
    assert set(own) == set(COMMAND_SECTIONS)
    assert not set(own) & set(Config().to_dict())
    assert yaml.safe_load(path.read_text()) == {**Config().to_dict(), **own}


def test_yaml_words_off_no_on_stay_strings(tmp_path):
    """YAML 1.1 reads off/no/on as booleans; a config key like train.amp=off must arrive as
    the word, from --set and from a file, while true/false stay booleans."""
    from reid_pipeline.config import load_config, parse_set

    assert parse_set("train.amp=off") == ("train.amp", "off")
    assert parse_set("output.video=false") == ("output.video", False)
    assert parse_set("detector.conf=0.3") == ("detector.conf", 0.3)
    assert load_config(None, dict([parse_set("train.amp=off")])).train.amp == "off"
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  amp: off\noutput:\n  video: False\n")
    cfg = load_config(f)
    assert cfg.train.amp == "off" and cfg.output.video is False
    f.write_text("output:\n  video: no\n")  # a boolean key still takes yes/no/on/off
    assert load_config(f).output.video is False
    f.write_text("output:\n  video: maybe\n")
    with pytest.raises(ConfigError, match="output.video"):
        load_config(f)


def test_config_is_frozen_and_variants_are_copies():
    import dataclasses

    from reid_pipeline.config import with_key

    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.backbone = "osnet_x0_25"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.device = "cpu"  # type: ignore[misc]
    other = with_key(cfg, "detector.conf", "0.4")
    assert other.detector.conf == 0.4 and cfg.detector.conf == 0.1
    assert other.tracker is cfg.tracker  # untouched sections are shared, not copied
    with pytest.raises(ConfigError, match=r"detector\.nonsense"):
        with_key(cfg, "detector.nonsense", 1)
    with pytest.raises(ConfigError, match=r"detector\.conf"):
        with_key(cfg, "detector.conf", "high")


def test_resolved_config_round_trip(tmp_path):
    """The config written beside a run's outputs reads back to an equal Config."""
    from reid_pipeline.config import Config, write_resolved

    cfg = load_config(
        overrides={
            "device": "cpu",
            "input.frames": "3:40",
            "input.fps": 12.5,
            "detector.kind": "mot",
            "detector.mot_det": "a/det.txt,b/det.txt",
            "tracker.min_height": 40,
            "model.checkpoint": "runs/train/best.pt",
            "match.threshold": 0.85,
            "gallery.db": str(tmp_path / "g.db"),
            "output.video": False,
            "train.amp": "off",
            "train.step_milestones": [0.3, 0.6],
            "train.lr": 1e-5,
            "eval.modes": "cosine",
            "stream.watch": [3, 4],
            "mot_eval.sequence": "seq",
            "log_level": "DEBUG",
        }
    )
    path = write_resolved(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml" and path.is_file()
    back = load_config(path)
    assert back == cfg
    assert load_config(write_resolved(Config(), tmp_path / "defaults")) == Config()


def test_resolved_config_redacts_credentials(tmp_path):
    from reid_pipeline.config import write_resolved

    url = "postgresql+psycopg://alice:s3cret@db.local:5432/reid"
    cfg = load_config(overrides={"gallery.db": url})
    text = write_resolved(cfg, tmp_path).read_text()
    assert "s3cret" not in text and "alice" not in text
    assert (
        load_config(tmp_path / "config.yaml").gallery.db
        == "postgresql+psycopg://***@db.local:5432/reid"
    )
    assert cfg.gallery.db == url  # the run's own config keeps them


def test_resolved_config_unwritable_folder(tmp_path):
    from reid_pipeline.config import write_resolved
    from reid_pipeline.errors import OutputError

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="a-file"):
        write_resolved(load_config(), blocker / "run")


def test_command_sections_belong_to_their_command(tmp_path):
    """A command's own section (manage, bench, ...) is not part of the run's Config: a file
    may hold it (every command reads the same file; the command it belongs to checks it),
    an override of it is refused naming the command."""
    from reid_pipeline.commands.options import BenchOptions, ManageOptions
    from reid_pipeline.config import Config, load_section

    f = tmp_path / "c.yaml"
    f.write_text(
        "detector:\n  conf: 0.3\nmanage:\n  yes: true\n  older_than: 2w\n"
        "bench:\n  stages: [scoring]\n"
    )
    cfg = load_config(f)
    assert cfg.detector.conf == 0.3 and not hasattr(cfg, "manage")
    assert "manage" not in Config().to_dict() and "bench" not in Config().to_dict()
    with pytest.raises(ConfigError, match=r"manage\.yes.*reid gallery"):
        load_config(overrides={"manage.yes": True})
    m = load_section(ManageOptions, "manage", f, {"manage.force": "true"})
    assert (m.yes, m.older_than, m.force) == (True, "2w", True)
    assert load_section(ManageOptions, "manage") == ManageOptions()
    assert load_section(BenchOptions, "bench", f).stages == ["scoring"]
    with pytest.raises(ConfigError, match=r"manage\.older_than"):
        load_section(ManageOptions, "manage", None, {"manage.older_than": "soon"})
    with pytest.raises(ConfigError, match=r"bench\.stages"):
        load_section(BenchOptions, "bench", None, {"bench.stages": "scoring,gpu"})
    with pytest.raises(ConfigError, match=r"manage\.nonsense.*unknown key"):
        load_section(ManageOptions, "manage", None, {"manage.nonsense": 1})
    f.write_text("manage: 5\n")
    with pytest.raises(ConfigError, match="manage"):
        load_section(ManageOptions, "manage", f)


def test_command_options_from_the_command_line(tmp_path):
    """Flags, --set and the file's section reach the command's own settings; the demo's old
    keys (output.demo_seed, ...) still do."""
    from reid_pipeline.cli import build_parser
    from reid_pipeline.commands.common import config_from_args, options_from_args
    from reid_pipeline.commands.options import DemoOptions, ManageOptions, SearchOptions

    parser = build_parser()
    args = parser.parse_args(
        ["demo", "--people", "6", "--set", "output.demo_seed=3", "--device", "cpu"]
    )
    assert config_from_args(args).device == "cpu"
    assert options_from_args(args, DemoOptions) == DemoOptions(people=6, seed=3)
    args = parser.parse_args(["demo", "--set", "demo.seed=1000"])
    with pytest.raises(ConfigError, match=r"demo\.seed.*\[0, 1000\)"):
        config_from_args(args)  # checked up front, before the command runs

    f = tmp_path / "c.yaml"
    f.write_text("search:\n  top: 3\n  mode: crop\n")
    args = parser.parse_args(
        ["search", "p.jpg", "--config", str(f), "--min-probability", "0.2", "--set", "search.top=4"]
    )
    assert options_from_args(args, SearchOptions) == SearchOptions(
        top=4, mode="crop", min_probability=0.2
    )
    args = parser.parse_args(["gallery", "delete", "3", "--yes"])
    assert options_from_args(args, ManageOptions).yes is True
    args = parser.parse_args(["process", "v.mp4", "--set", "manage.yes=true"])
    with pytest.raises(ConfigError, match=r"manage\.yes.*reid gallery"):
        config_from_args(args)
