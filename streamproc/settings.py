"""The service's settings: one pydantic-settings class, parsed once in the entry point.

Every setting comes from, highest priority first:

1. its command-line flag (``--broker``, ``--metrics-port``, ...);
2. its environment variable, ``STREAMPROC_`` + the name in capitals (``STREAMPROC_BROKER``);
3. the TOML file given with ``--config`` (or ``STREAMPROC_CONFIG``), key = the name;
4. the default.

The password is a secret: it comes only from ``STREAMPROC_PASSWORD`` or from the file named
by ``password_file``, never from a flag (visible in ``ps``) or the TOML file (often
committed). :func:`add_setting_flags` builds the flags from the fields, so ``--help``, the
README table and the class cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streamproc.codec import DEFAULT_MAX_PAYLOAD
from streamproc.errors import ConfigError
from streamproc.evaluator import DEFAULT_MAX_BEDS

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "add_setting_flags",
    "load_settings",
    "settings_from_args",
]

ENV_PREFIX: Final = "STREAMPROC_"
#: Settings that never get a flag: secrets must not appear in ``ps`` output.
_NO_FLAG: Final = frozenset({"password"})
#: Flags whose name differs from the field's (a repeatable flag reads better singular).
_FLAG_NAMES: Final = {"topics": "--topic", "protocol_files": "--protocol-file"}
_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Settings(BaseSettings):
    """Everything ``streamproc run`` needs; see the README table "Running the service"."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    broker: str = Field(
        "mqtt://127.0.0.1:1883",
        description="broker URL: mqtt://host:port, or mqtts://host:port for TLS",
    )
    ca_file: Path | None = Field(None, description="CA certificate (PEM) that signed the broker's")
    client_cert: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    client_key: Path | None = Field(None, description="private key (PEM) of --client-cert")
    username: str | None = Field(None, description="MQTT user name")
    password: SecretStr | None = Field(
        None, description="MQTT password: only from STREAMPROC_PASSWORD (never a flag)"
    )
    password_file: Path | None = Field(
        None, description="file whose first line is the MQTT password"
    )
    instance: str = Field(
        "streamproc",
        description="instance name: MQTT client id and streamproc/{instance}/state|rejected",
    )
    topics: list[str] = Field(
        ["icu/#"],
        min_length=1,
        description="topic filters this instance owns, e.g. icu/w1/# (repeat the flag)",
    )
    protocol: str = Field(
        "tartare2s-ttp", description="protocol for beds without a protocol in their context"
    )
    protocol_files: list[Path] = Field(
        [], description="extra protocol TOML files (override presets of the same name)"
    )
    metrics_host: str = Field("127.0.0.1", description="address of the /metrics HTTP server")
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="port of /metrics, /healthz, /readyz (0 = any free)"
    )
    state_dir: Path = Field(Path("state"), description="directory of the outbox and checkpoint")
    max_payload: int = Field(
        DEFAULT_MAX_PAYLOAD, gt=0, description="largest accepted payload in bytes (too_large)"
    )
    future_skew: float = Field(
        5.0, ge=0, description="seconds a reading may be ahead of the clock (future)"
    )
    max_beds: int = Field(
        DEFAULT_MAX_BEDS,
        ge=1,
        description="beds evaluated at once; a message for one more bed is rejected (topic)",
    )
    session_expiry: int = Field(
        3600, ge=0, description="seconds the broker keeps our session and readings while down"
    )
    keepalive: int = Field(15, ge=1, description="MQTT keep-alive in seconds")
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        description="unacknowledged readings in flight: the inbound queue bound (back-pressure)",
    )
    checkpoint_interval: float = Field(
        5.0, gt=0, description="seconds between evaluator checkpoints"
    )
    status_interval: float = Field(
        1.0, gt=0, description="least seconds between two retained statuses of one bed"
    )
    silent_after: float = Field(
        60.0, gt=0, description="seconds without a reading before a bed counts as silent"
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio", description="event loop; uvloop receives faster (pip install 'streamproc[fast]')"
    )
    reconnect_max: float = Field(
        30.0, gt=0, description="longest wait between reconnection attempts, in seconds"
    )

    @field_validator("instance")
    @classmethod
    def _instance_is_a_topic_level(cls, value: str) -> str:
        if not _INSTANCE.fullmatch(value):
            raise ValueError("use 1-64 of A-Z a-z 0-9 _ -")
        return value

    @field_validator("broker")
    @classmethod
    def _broker_is_mqtt_url(cls, value: str) -> str:
        if not re.fullmatch(r"mqtts?://[^/:]+(:\d+)?/?", value):
            raise ValueError("use mqtt://host:port or mqtts://host:port")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def password_value(self) -> str | None:
        """The password from STREAMPROC_PASSWORD, else from ``password_file``, else ``None``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError(f"cannot read a password from {self.password_file}: {exc}") from exc


def load_settings(*, config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from flags (``overrides``), environment, the TOML file and defaults."""
    if config_file is not None:
        _check_config_file(config_file)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from exc


def _check_config_file(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if re.search(r"(?m)^\s*password\s*=", path.read_text(encoding="utf-8")):
        raise ConfigError(
            f"{path} holds a password: set STREAMPROC_PASSWORD or password_file instead"
        )


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" (flags, {ENV_PREFIX}* environment or {config_file})" if config_file else ""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
    return f"invalid settings{where}: {problems}"


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (except secrets); defaults stay ``None`` = "not given"."""
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get(f"{ENV_PREFIX}CONFIG"),
        metavar="FILE",
        help=f"TOML file of settings (env {ENV_PREFIX}CONFIG); keys are the names below",
    )
    for name, field in Settings.model_fields.items():
        if name not in _NO_FLAG:
            _add_flag(parser, name, field)


def _add_flag(parser: argparse.ArgumentParser, name: str, field: FieldInfo) -> None:
    flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    default = field.get_default()
    shown = default.get_secret_value() if isinstance(default, SecretStr) else default
    help_text = (
        f"{field.description} [env {ENV_PREFIX}{name.upper()}, TOML {name}, default {shown!r}]"
    )
    is_list = isinstance(default, list)
    parser.add_argument(
        flag,
        dest=name,
        action="append" if is_list else "store",
        type=_flag_type(field),
        default=None,
        metavar=name.upper(),
        help=help_text.replace("%", "%%"),
    )


def _flag_type(field: FieldInfo) -> type:
    annotation = str(field.annotation)
    for candidate in (int, float, Path):
        if candidate.__name__ in annotation:
            return candidate
    return str


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags (those given), the environment and ``--config``."""
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return load_settings(config_file=args.config, **given)
