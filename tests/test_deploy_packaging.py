"""Static checks of the packaging in ``deploy/``: systemd unit, Dockerfile, compose, Kubernetes.

No container engine or cluster runs here, so these tests check what can be checked
without one: the files parse, every reference inside them resolves (volumes, config
maps, files copied into the image, probes), the hardening is in place, and systemd
itself verifies the unit where ``systemd-analyze`` is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, MOSQUITTO, REPO, DeployBroker, Pki, client, received_until

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


@pytest.mark.broker
@pytest.mark.asyncio
async def test_the_compose_broker_lets_the_simulated_ward_reach_streamproc(
    tmp_path: Path,
) -> None:
    etc = compose_setup(tmp_path)
    secrets = etc / "secrets"

    def secret(user: str) -> str:
        return (secrets / f"{user}.password").read_text(encoding="utf-8")

    pki = Pki(etc / "certs")
    with DeployBroker(workdir=tmp_path / "mosquitto", pki=pki, etc=etc) as broker:
        async with (
            client(broker, "streamproc", secret=secret("streamproc")) as processor,
            client(broker, "sim-icu1", secret=secret("sim-icu1")) as gateway,
        ):
            await processor.subscribe("icu/#", qos=1)
            await gateway.publish("icu/icu2/b01/vitals", b"{}", qos=1)  # not its ward
            await gateway.publish("icu/icu1/b01/vitals", b"{}", qos=1)
            seen = await received_until(processor, "icu/icu1/b01/vitals")
    assert [message.topic.value for message in seen] == ["icu/icu1/b01/vitals"]


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
