"""Run the shipped ``deploy/`` broker configuration in tests.

The files in ``deploy/mosquitto/`` name production paths (``/etc/mosquitto/...``,
``/var/lib/mosquitto/``) and port 8883. :func:`render` swaps exactly those for a temporary
directory and a free loopback port, and fails when an expected line is missing, so a test
always runs the configuration a hospital installs, not a copy of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiomqtt
import yaml

from streamproc.broker import LocalBroker, free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
MOSQUITTO = DEPLOY / "mosquitto"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamproc.json"
WAIT = 5.0  # seconds: every wait for a message or a connection has this bound


#: the metric families the service exports (the agreed interface)
FAMILIES = {
    "streamproc_messages_received": "counter",
    "streamproc_unknown_signals": "counter",
    "streamproc_alert_events": "counter",
    "streamproc_processing_latency_seconds": "histogram",
    "streamproc_reading_age_seconds": "histogram",
    "streamproc_queue_depth": "gauge",
    "streamproc_active_beds": "gauge",
    "streamproc_active_alerts": "gauge",
    "streamproc_broker_connected": "gauge",
    "streamproc_reconnects": "counter",
    "streamproc_outbox_depth": "gauge",
    "streamproc_silent_beds": "gauge",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def family_of(series: str, families: dict[str, str]) -> str | None:
    """The family a sample name belongs to (``x_bucket`` -> ``x`` for a histogram)."""
    for family, kind in families.items():
        if any(series == family + suffix for suffix in SUFFIXES[kind]):
            return family
    return None


def queried_series(expression: str) -> set[str]:
    return set(re.findall(r"\bstreamproc_[a-z_]+", expression))


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "streamproc-rules.yml").read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def render(text: str, replacements: Mapping[str, str]) -> str:
    """Replace each key of ``replacements``; every key must occur in ``text``."""
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"the shipped configuration no longer contains {old!r}")
        text = text.replace(old, new)
    return text


@dataclass(frozen=True, slots=True)
class Pki:
    """Certificates made by ``deploy/mosquitto/make-certs.sh`` at test time."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def tls(self, *, client: str | None = None) -> ssl.SSLContext:
        """A client context that verifies the broker; TLS 1.2, so that a broker refusing
        the client's certificate fails the handshake itself (TLS 1.3 reports it later)."""
        context = ssl.create_default_context(cafile=self.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        if client is not None:
            context.load_cert_chain(self.cert(client), self.key(client))
        return context


def make_pki(directory: Path) -> Pki:
    script = str(MOSQUITTO / "make-certs.sh")
    steps = (["ca"], ["server", "broker", "ward-gw.test"], ["server", "central", "central.test"])
    for args in (*steps, ["client", "streamproc"]):
        subprocess.run([script, str(directory), *args], check=True, capture_output=True)
    return Pki(directory)


def password(name: str) -> str:
    return f"pw-{name.replace('/', '-')}"


def add_account(etc: Path, role: str, name: str, ward: str = "") -> None:
    """``add-account.sh`` with the password fed on standard input, as documented."""
    command = [str(MOSQUITTO / "add-account.sh"), "--passwd", str(etc / "passwd")]
    command += ["--acl", str(etc / "acl"), role, name] + ([ward] if ward else [])
    subprocess.run(command, input=password(name) + "\n", text=True, check=True, capture_output=True)


#: the accounts of the ward broker in the tests: (role, name, ward)
WARD_ACCOUNTS = (
    ("device", "icu1/b07", ""),
    ("device", "icu1/b08", ""),
    ("gateway", "gw-icu1", "icu1"),
    ("streamproc", "streamproc", ""),
    ("consumer", "nurse-icu1", ""),
)
#: the accounts of the central broker: a ward gateway's bridge and a hospital dashboard
CENTRAL_ACCOUNTS = (("bridge", "bridge-icu1", "icu1"), ("consumer", "central-desk", ""))
#: a test-only account that reads everything, to show that a denied message went nowhere
OBSERVER_BLOCK = "\n# test observer\nuser observer\ntopic read #\ntopic read $SYS/#\n"


class DeployBroker(LocalBroker):
    """A Mosquitto running ``deploy/mosquitto/mosquitto.conf`` and an ACL from ``deploy/``."""

    def __init__(
        self,
        *,
        workdir: Path,
        pki: Pki,
        acl: str = "ward.acl",
        accounts: tuple[tuple[str, str, str], ...] = WARD_ACCOUNTS,
        server: str = "broker",
        conf_d: Mapping[str, str] | None = None,
        require_certificate: bool = False,
        etc: Path | None = None,
    ) -> None:
        """Accounts are made with ``add-account.sh`` unless ``etc`` already holds the
        ``passwd`` and ``acl`` files (as the compose set-up script makes them)."""
        super().__init__(workdir=workdir)
        self.pki = pki
        self.server = server
        self.conf_d = dict(conf_d or {})
        self.require_certificate = require_certificate
        if etc is not None:
            self.etc = etc
            return
        self.etc = workdir / "etc"
        self.etc.mkdir(parents=True, exist_ok=True)
        acl_text = (MOSQUITTO / acl).read_text(encoding="utf-8")
        (self.etc / "acl").write_text(acl_text + OBSERVER_BLOCK, encoding="utf-8")
        for role, name, ward in (*accounts, ("consumer", "observer", "")):
            add_account(self.etc, role, name, ward)

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        conf_d = self.workdir / "conf.d"
        conf_d.mkdir(parents=True, exist_ok=True)
        for name, text in self.conf_d.items():
            (conf_d / name).write_text(text, encoding="utf-8")
        (self.workdir / "data").mkdir(exist_ok=True)
        text = render(
            (MOSQUITTO / "mosquitto.conf").read_text(encoding="utf-8"),
            {
                "listener 8883\n": f"listener {self.port} 127.0.0.1\n",
                "/etc/mosquitto/certs/ca.crt": str(self.pki.ca),
                "/etc/mosquitto/certs/broker.crt": str(self.pki.cert(self.server)),
                "/etc/mosquitto/certs/broker.key": str(self.pki.key(self.server)),
                "require_certificate false": (
                    f"require_certificate {str(self.require_certificate).lower()}"
                ),
                "/etc/mosquitto/passwd": str(self.etc / "passwd"),
                "/etc/mosquitto/acl": str(self.etc / "acl"),
                "/var/lib/mosquitto/": f"{self.workdir / 'data'}/",
                "/etc/mosquitto/conf.d": str(conf_d),
            },
        )
        # Started as root, Mosquitto drops to the "mosquitto" user before it reads the
        # password file; the test's files belong to whoever runs the tests.
        text += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path


@asynccontextmanager
async def client(
    broker: DeployBroker,
    username: str | None,
    *,
    secret: str | None = None,
    tls: ssl.SSLContext | None = None,
    identifier: str | None = None,
    clean_session: bool = True,
) -> AsyncIterator[aiomqtt.Client]:
    """A connected MQTT client on the deploy broker, over TLS verified against the CA."""
    if secret is None and username is not None:
        secret = password(username)
    mqtt = aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=username,
        password=secret,
        tls_context=tls or broker.pki.tls(),
        identifier=identifier,
        clean_session=clean_session,
        timeout=WAIT,
    )
    async with mqtt:  # aiomqtt bounds the connection attempt by ``timeout``
        yield mqtt


async def received_until(subscriber: aiomqtt.Client, marker_topic: str) -> list[aiomqtt.Message]:
    """Every message the subscriber gets up to and including one on ``marker_topic``.

    A broker forwards one publisher's messages in order, so when the marker that was
    published last has arrived, anything published before it would have arrived too.
    """
    seen: list[aiomqtt.Message] = []
    async with asyncio.timeout(WAIT):
        async for message in subscriber.messages:
            seen.append(message)
            if message.topic.matches(marker_topic):
                return seen
    raise AssertionError("the subscription ended before the marker arrived")


def scrape(port: int, path: str) -> str:
    """GET ``http://127.0.0.1:port/path`` and return the body (raises on a non-2xx answer)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


class ChildProcess:
    """A server started as a child process, ready once ``ready_path`` answers 200."""

    ready_path = "/"
    start_timeout = 20.0

    def __init__(self, *, workdir: Path, port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port
        self.log = workdir / "output.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        argv, env = self.command()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{argv[0]} exited at start:\n{self.log_text()}")
            try:
                scrape(self.port, self.ready_path)
            except OSError:
                time.sleep(0.1)
            else:
                return
        self.stop()
        raise AssertionError(f"{argv[0]} was not ready within {self.start_timeout} s")

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL only if it does not stop in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Streamproc(ChildProcess):
    """``streamproc run`` configured by ``STREAMPROC_*`` variables only, as deploy/ runs it.

    TLS with the test CA, the ``streamproc`` account's password in a file (mode 0600),
    optionally the client certificate; logging at DEBUG so that a test sees every line
    the service could write.
    """

    ready_path = "/readyz"

    def __init__(
        self,
        *,
        broker: DeployBroker,
        workdir: Path,
        client_cert: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``settings``: STREAMPROC_* variables that replace the defaults below (except
        the metrics port and the state directory, which are always this run's own)."""
        super().__init__(workdir=workdir, port=free_port())
        self.metrics_port = self.port
        self.password = password("streamproc")
        secret = workdir / "broker-password"
        secret.write_text(self.password + "\n", encoding="utf-8")
        secret.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
        self.env.update(
            STREAMPROC_BROKER=broker.url,
            STREAMPROC_CA_FILE=str(broker.pki.ca),
            STREAMPROC_USERNAME="streamproc",
            STREAMPROC_PASSWORD_FILE=str(secret),
            STREAMPROC_INSTANCE="streamproc-icu1",
            STREAMPROC_TOPICS='["icu/icu1/#"]',
        )
        self.env.update(settings or {})
        self.env.update(
            STREAMPROC_METRICS_HOST="127.0.0.1",
            STREAMPROC_METRICS_PORT=str(self.port),
            STREAMPROC_STATE_DIR=str(workdir / "state"),
        )
        if client_cert:
            self.env["STREAMPROC_CLIENT_CERT"] = str(broker.pki.cert("streamproc"))
            self.env["STREAMPROC_CLIENT_KEY"] = str(broker.pki.key("streamproc"))

    @staticmethod
    def executable() -> Path:
        return Path(sys.executable).parent / "streamproc"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [str(self.executable()), "--log-level", "DEBUG", "run"], self.env


class Prometheus(ChildProcess):
    """A real Prometheus running ``deploy/prometheus/prometheus.yml`` and its rules, with
    1 s scrape and evaluation intervals and the target pointed at a local streamproc."""

    ready_path = "/-/ready"

    def __init__(self, *, workdir: Path, target_port: int) -> None:
        super().__init__(workdir=workdir, port=free_port())
        prometheus = DEPLOY / "prometheus"
        config = render(
            (prometheus / "prometheus.yml").read_text(encoding="utf-8"),
            {
                "scrape_interval: 15s": "scrape_interval: 1s",
                "evaluation_interval: 15s": "evaluation_interval: 1s",
                "scrape_interval: 5s": "scrape_interval: 1s",
                "- streamproc-rules.yml": f"- {prometheus / 'streamproc-rules.yml'}",
                '"streamproc:9108"': f'"127.0.0.1:{target_port}"',
                '"localhost:9090"': f'"127.0.0.1:{self.port}"',
            },
        )
        self.config = workdir / "prometheus.yml"
        self.config.write_text(config, encoding="utf-8")

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ], dict(os.environ)

    def api(self, path: str) -> Any:
        answer = json.loads(scrape(self.port, f"/api/v1/{path}"))
        assert answer["status"] == "success", answer
        return answer["data"]
