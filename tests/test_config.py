import pytest

from reid_pipeline.config import load_config
from reid_pipeline.errors import ConfigError


def test_defaults_validate():
    cfg = load_config()
    assert cfg.detector.kind == "auto"
    assert cfg.match.threshold == 0.8 and cfg.match.tracklet_score == "pair_mean"


def test_override_coerces_types():
    cfg = load_config(overrides={"detector.conf": "0.4", "tracker.max_crops": "8",
                                 "eval.modes": "cosine,euclidean"})
    assert cfg.detector.conf == 0.4 and cfg.tracker.max_crops == 8
    assert cfg.eval.modes == ["cosine", "euclidean"]


@pytest.mark.parametrize("key,value,needle", [
    ("detector.conf", 2.0, "detector.conf"),
    ("detector.kind", "sift", "detector.kind"),
    ("tracker.max_crops", "many", "tracker.max_crops"),
    ("match.threshold", 1.5, "match.threshold"),
    ("eval.modes", "cosine,manhattan", "eval.modes"),
    ("detector.nonsense", 1, "detector.nonsense"),
    ("device", "tpu", "device"),
])
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
    assert redact_url("open rtsp://admin:s3cret@10.0.0.1/live failed") == \
        "open rtsp://***@10.0.0.1/live failed"
    assert redact_url("postgresql+psycopg://u:p@127.0.0.1/test") == \
        "postgresql+psycopg://***@127.0.0.1/test"
    assert redact_url("rtsp://cam/live") == "rtsp://cam/live"


def test_default_yaml_lists_every_key_with_its_default():
    """configs/default.yaml is the documented template: it must hold exactly the schema."""
    from pathlib import Path

    import yaml

    from reid_pipeline.config import Config

    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert yaml.safe_load(path.read_text()) == Config().to_dict()


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
