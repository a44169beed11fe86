"""Shared fixtures. Integration tests run a real Mosquitto on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import Pki, make_pki

from streamproc.broker import LocalBroker

DATA = Path(__file__).parent / "data"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A fresh Mosquitto for one test, stopped afterwards."""
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients")
    with LocalBroker(workdir=tmp_path / "broker") as running:
        yield running


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def deploy_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, broker and client certificates from ``deploy/mosquitto/make-certs.sh``."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: apt-get install -y openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))
