"""Static checks of the packaging in ``deploy/``: systemd unit, Dockerfile, compose, Kubernetes.

No container engine or cluster runs here, so these tests check what can be checked
without one: the files parse, every reference inside them resolves (volumes, config
maps, files copied into the image, probes), the hardening is in place, and systemd
itself verifies the unit where ``systemd-analyze`` is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from deploy_support import (
    DEPLOY,
    MOSQUITTO,
    REPO,
    WAIT,
    DeployBroker,
    Pki,
    Streamproc,
    client,
    scrape,
)

from streamproc.settings import ENV_PREFIX, Settings, load_settings

UNIT = DEPLOY / "systemd" / "streamproc.service"


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart and EnvironmentFile pointing at files that exist here."""
    env = tmp_path / "streamproc.env"
    shutil.copy(DEPLOY / "systemd" / "streamproc.env", env)
    streamproc = Path(sys.executable).parent / "streamproc"
    text = UNIT.read_text(encoding="utf-8")
    for old, new in (
        ("/opt/streamproc/bin/streamproc", str(streamproc)),
        ("/etc/streamproc/streamproc.env", str(env)),
    ):
        assert old in text
        text = text.replace(old, new)
    unit = tmp_path / "streamproc.service"
    unit.write_text(text, encoding="utf-8")
    return unit


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    unit = unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "streamproc.service" not in result.stderr, result.stderr


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the exposure 0-10; below 2.0 is "OK"."""
    unit = unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    settings = UNIT.read_text(encoding="utf-8")
    for line in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=streamproc",
        "LoadCredential=broker-password:/etc/streamproc/broker-password",
        "Environment=STREAMPROC_PASSWORD_FILE=%d/broker-password",
    ):
        assert f"\n{line}\n" in settings


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions of each build stage (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("FROM "):
            current = stages.setdefault(line.split()[-1], [])
        current.append(line)
    return stages


def test_the_image_runs_unprivileged_with_a_health_check() -> None:
    stages = dockerfile_stages()
    service = stages["service"]
    assert list(stages)[-1] == "service"  # the default build target
    user = [line for line in service if line.startswith("USER ")]
    assert user == ["USER 10001:10001"]
    healthcheck = next(line for line in service if line.startswith("HEALTHCHECK "))
    assert "/healthz" in healthcheck
    assert "STREAMPROC_METRICS_PORT=9108" in " ".join(service)


def test_everything_the_image_copies_is_in_the_build_context() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for lines in dockerfile_stages().values():
        for line in lines:
            if line.startswith("COPY ") and "--from=" not in line:
                for source in line.split()[1:-1]:
                    assert (REPO / source).exists(), source
                    assert source.rstrip("/") in kept, f"{source} is excluded by the dockerignore"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8"))
    return loaded


def test_compose_brings_up_the_whole_ward() -> None:
    services = compose()["services"]
    assert {"mosquitto", "streamproc", "ward-simulator", "prometheus", "grafana"} <= set(services)
    assert "exec python -m devices simulate" in " ".join(services["ward-simulator"]["entrypoint"])
    assert services["streamproc"]["environment"]["STREAMPROC_BROKER"].startswith("mqtts://")
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown {needed}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_every_compose_volume_is_declared_or_a_file_in_deploy() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in spec["volumes"], f"{name}: volume {source} is not declared"


def compose_setup(tmp_path: Path) -> Path:
    """Run the compose "pki" step natively, owned by this user instead of the images'."""
    etc, data = tmp_path / "pki", tmp_path / "broker-data"
    uid = str(os.getuid())
    env = {**os.environ, "MOSQUITTO_UID": uid, "SERVICE_UID": uid}
    script = str(DEPLOY / "compose-setup.sh")
    for _ in range(2):  # the second run keeps what the first made
        subprocess.run([script, str(etc), str(data)], env=env, check=True, capture_output=True)
    return etc


def test_the_compose_pki_step_makes_certificates_accounts_and_secrets(tmp_path: Path) -> None:
    etc = compose_setup(tmp_path)
    users = [line.split(":")[0] for line in (etc / "passwd").read_text().splitlines()]
    assert users == ["streamproc", "sim-icu1", "nurse-icu1"]
    assert (etc / "mosquitto.conf").read_text() == (MOSQUITTO / "mosquitto.conf").read_text()
    for user in users:
        assert len((etc / "secrets" / f"{user}.password").read_text()) >= 24
    assert (etc / "secrets").stat().st_mode & 0o077 == 0
    assert not (etc / "certs" / "ca.key").exists()


def natively(etc: Path, broker: DeployBroker) -> Callable[[str], str]:
    """Rewrite a compose value for a native run: /pki in ``etc``, the broker local."""

    def native(text: str) -> str:
        text = text.replace("$$", "$").replace("/pki/", f"{etc}/")
        return text.replace("mqtts://mosquitto:8883", broker.url)

    return native


def simulator_command(etc: Path, broker: DeployBroker) -> tuple[list[str], dict[str, str]]:
    """The compose file's ward-simulator (entrypoint, command, environment), natively."""
    service = compose()["services"]["ward-simulator"]
    native = natively(etc, broker)
    argv = [native(part) for part in service["entrypoint"] + service["command"]]
    env = {key: native(value) for key, value in service["environment"].items()}
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # "python" = this venv's
    return argv, {**os.environ, **env, "PATH": path}


def streamproc_settings(etc: Path, broker: DeployBroker) -> dict[str, str]:
    """The compose file's streamproc environment, natively."""
    environment = compose()["services"]["streamproc"]["environment"]
    return {key: natively(etc, broker)(value) for key, value in environment.items()}


@pytest.mark.broker
@pytest.mark.asyncio
async def test_the_compose_ward_runs_natively_from_pki_to_streamproc(tmp_path: Path) -> None:
    """Compose's pki step, broker files, simulator command and streamproc environment, run
    natively: the simulated ward logs in with its gateway account, publishes each input
    kind, and streamproc (logged in with its own secret) evaluates all eight beds."""
    etc = compose_setup(tmp_path)
    streamproc_password = (etc / "secrets" / "streamproc.password").read_text(encoding="utf-8")
    with (
        DeployBroker(workdir=tmp_path / "mosquitto", pki=Pki(etc / "certs"), etc=etc) as broker,
        Streamproc(
            broker=broker,
            workdir=tmp_path / "streamproc",
            settings=streamproc_settings(etc, broker),
        ) as service,
    ):
        async with client(broker, "streamproc", secret=streamproc_password) as processor:
            await processor.subscribe("icu/#", qos=1)
            argv, env = simulator_command(etc, broker)
            log = (tmp_path / "simulator.log").open("wb")
            simulator = await asyncio.create_subprocess_exec(
                *argv, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                kinds = await input_kinds_seen(processor, {"vitals", "context", "waveform"})
                beds = await active_beds(service, at_least=8)
            finally:
                simulator.terminate()
                await asyncio.wait_for(simulator.wait(), WAIT)
                log.close()
    assert {"vitals", "context", "waveform"} <= kinds, (tmp_path / "simulator.log").read_text()
    assert beds == 8


ACTIVE_BEDS = "streamproc_active_beds "


async def active_beds(service: Streamproc, *, at_least: int) -> float:
    """``streamproc_active_beds`` from /metrics, polled until it reaches ``at_least``."""
    beds = 0.0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3 * WAIT):
            while beds < at_least:
                await asyncio.sleep(0.2)
                metrics = await asyncio.to_thread(scrape, service.metrics_port, "/metrics")
                (line,) = [
                    x for x in metrics.splitlines() if x.startswith("streamproc_active_beds ")
                ]
                beds = float(line.split()[1])
    return beds


async def input_kinds_seen(subscriber: aiomqtt.Client, wanted: set[str]) -> set[str]:
    """The kinds of bed topics (vitals, context, waveform) seen until all wanted arrived."""
    seen: set[str] = set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3 * WAIT):
            async for message in subscriber.messages:
                assert message.topic.value.startswith("icu/icu1/"), message.topic.value
                seen.add(message.topic.value.split("/")[3])
                if seen >= wanted:
                    break
    return seen


def kubernetes() -> dict[str, dict[str, Any]]:
    """Every manifest listed in the kustomization, by ``Kind/name``."""
    directory = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    documents: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((directory / resource).read_text("utf-8")):
            documents[f"{document['kind']}/{document['metadata']['name']}"] = document
    return documents


def test_the_deployment_probes_health_and_readiness() -> None:
    documents = kubernetes()
    deployment = documents["Deployment/streamproc-icu1"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    settings = documents["ConfigMap/streamproc-icu1"]["data"]
    assert ports["metrics"] == int(settings["STREAMPROC_METRICS_PORT"])
    assert settings["STREAMPROC_METRICS_HOST"] == "0.0.0.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_deployment_mounts_what_the_settings_name() -> None:
    documents = kubernetes()
    pod = documents["Deployment/streamproc-icu1"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounts.values()) == set(volumes)
    settings = documents["ConfigMap/streamproc-icu1"]["data"]
    password = Path(settings["STREAMPROC_PASSWORD_FILE"])
    secret = volumes[mounts[str(password.parent)]]["secret"]["secretName"]
    assert password.name in documents[f"Secret/{secret}"]["stringData"]
    ca = Path(settings["STREAMPROC_CA_FILE"])
    config_map = volumes[mounts[str(ca.parent)]]["configMap"]["name"]
    assert ca.name in documents[f"ConfigMap/{config_map}"]["data"]
    assert mounts[settings["STREAMPROC_STATE_DIR"]] == "state"
    assert "STREAMPROC_PASSWORD" not in settings  # the password only as a file
    assert re.fullmatch(r"mqtts://[^:]+:8883", settings["STREAMPROC_BROKER"])


def systemd_environment() -> dict[str, str]:
    """streamproc.env plus the unit's own Environment= lines (credentials dir filled in)."""
    lines = (DEPLOY / "systemd" / "streamproc.env").read_text(encoding="utf-8").splitlines()
    unit = UNIT.read_text(encoding="utf-8").splitlines()
    lines += [line.removeprefix("Environment=") for line in unit if line.startswith("Environment=")]
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value.replace("%d", "/run/credentials/streamproc.service") for key, value in pairs}


def dockerfile_environment() -> dict[str, str]:
    (env_line,) = [line for line in dockerfile_stages()["service"] if line.startswith("ENV ")]
    pairs = (item.split("=", 1) for item in env_line.split()[1:])
    return {key: value for key, value in pairs if key.startswith("STREAMPROC_")}


SETTINGS_SOURCES = {
    "compose": lambda: compose()["services"]["streamproc"]["environment"],
    "kubernetes": lambda: kubernetes()["ConfigMap/streamproc-icu1"]["data"],
    "systemd": systemd_environment,
    "dockerfile": dockerfile_environment,
}


@pytest.mark.parametrize("source", sorted(SETTINGS_SOURCES))
def test_the_deploy_settings_are_valid_streamproc_settings(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every STREAMPROC_* variable a deploy file sets is a setting, and together they
    parse (broker URL, ports, topic list) the way ``streamproc run`` will parse them."""
    environment = SETTINGS_SOURCES[source]()
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        assert name.startswith(ENV_PREFIX), name
        assert name.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, name
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert "STREAMPROC_PASSWORD" not in environment  # a file or a credential, never a value
    if source != "dockerfile":  # the image leaves the broker to whoever runs it
        assert settings.broker.startswith("mqtts://")
        assert settings.ca_file is not None
        assert settings.password_file is not None
