"""Settings: flags over environment over TOML over defaults; the password never on a flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import Settings, add_setting_flags, load_settings, settings_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)  # as `streamproc run` does
    add_setting_flags(parser)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BROKER", "INSTANCE", "METRICS_PORT", "PASSWORD", "CONFIG", "TOPICS"):
        monkeypatch.delenv(f"STREAMPROC_{name}", raising=False)


def test_defaults_match_the_agreed_interface() -> None:
    settings = load_settings()
    assert settings.broker == "mqtt://127.0.0.1:1883"
    assert settings.instance == "streamproc"
    assert settings.topics == ["icu/#"]
    assert settings.protocol == "tartare2s-ttp"
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9108)
    assert settings.state_dir == Path("state")
    assert settings.password_value() is None


def test_flag_beats_env_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "streamproc.toml"
    config.write_text(
        'instance = "from-toml"\nmetrics_port = 9200\nbroker = "mqtt://toml:1883"\n'
        'topics = ["icu/w1/#"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("STREAMPROC_METRICS_PORT", "9300")
    monkeypatch.setenv("STREAMPROC_BROKER", "mqtt://env:1883")
    args = _parse(["--config", str(config), "--broker", "mqtts://flag:8883"])
    settings = settings_from_args(args)
    assert settings.broker == "mqtts://flag:8883"  # flag
    assert settings.metrics_port == 9300  # env
    assert settings.instance == "from-toml"  # file
    assert settings.topics == ["icu/w1/#"]
    assert settings.protocol == "tartare2s-ttp"  # default


def test_repeatable_topic_flag() -> None:
    args = _parse(["--topic", "icu/w1/#", "--topic", "icu/w2/#", "--metrics-port", "0"])
    settings = settings_from_args(args)
    assert settings.topics == ["icu/w1/#", "icu/w2/#"]
    assert settings.metrics_port == 0


def test_password_from_env_or_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        _parse(["--password", "hunter2"])
    secret = tmp_path / "password"
    secret.write_text("from-file\n", encoding="utf-8")
    assert load_settings(password_file=secret).password_value() == "from-file"
    monkeypatch.setenv("STREAMPROC_PASSWORD", "from-env")
    settings = load_settings(password_file=secret)
    assert settings.password_value() == "from-env"
    assert "from-env" not in repr(settings)


def test_password_in_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "streamproc.toml"
    config.write_text('password = "hunter2"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="STREAMPROC_PASSWORD"):
        load_settings(config_file=config)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('instance = "has space"\n', "instance"),
        ('broker = "http://x"\n', "broker"),
        ("metrics_port = 70000\n", "metrics_port"),
        ('brokr = "mqtt://x"\n', "brokr"),  # a typo is an error, not silently ignored
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, match: str) -> None:
    config = tmp_path / "streamproc.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_settings(config_file=config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")


def test_help_documents_every_setting() -> None:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser)
    text = parser.format_help()
    for name in Settings.model_fields:
        assert f"STREAMPROC_{name.upper()}" in text
    assert "--config" in text
    assert "--password " not in text


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"| `{name}` |" in readme, name
        assert f"`STREAMPROC_{name.upper()}`" in readme, name
