"""A local Mosquitto as a child process, on a free loopback port.

``streamproc demo`` uses it when no broker is configured, and the integration tests start
one per test module. It is a real broker with the settings the service relies on:
TCP_NODELAY (design §6), persistence for persistent sessions, and a queue deep enough to
hold readings published while the processor restarts.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from streamproc.errors import ConfigError

__all__ = ["LocalBroker", "free_port"]

logger = logging.getLogger(__name__)

_BASE_CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
# design §6: without TCP_NODELAY a QoS 1 round trip on loopback takes tens of milliseconds
set_tcp_nodelay true
persistence {persistence}
persistence_location {workdir}/
# started as root, mosquitto drops to the user "mosquitto", which cannot write the workdir
# (sessions would then not survive a restart); as anyone else this line changes nothing
user {user}
# readings that wait in a persistent session while the processor restarts
max_queued_messages 1000000
max_inflight_messages 0
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBroker:
    """Start, stop and restart a Mosquitto on ``127.0.0.1:port``; a context manager."""

    def __init__(
        self,
        *,
        workdir: Path,
        port: int | None = None,
        persistence: bool = True,
        extra_config: str = "",
        executable: str = "mosquitto",
    ) -> None:
        found = shutil.which(executable)
        if found is None:
            raise ConfigError(
                "mosquitto is not on PATH: install it (apt-get install mosquitto) "
                "or point --broker at a running broker"
            )
        self.executable = found
        self.workdir = workdir
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = _BASE_CONFIG.format(
            port=self.port,
            persistence="true" if self.persistence else "false",
            workdir=self.workdir,
            user=getpass.getuser(),
        )
        self.config_path.write_text(text + self.extra_config, encoding="utf-8")
        return self.config_path

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        config = self.write_config()
        log = (self.workdir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [self.executable, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_listening(timeout)
        logger.info("mosquitto listening on %s", self.url)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ConfigError(f"mosquitto exited at start; see {self.workdir}/mosquitto.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise ConfigError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), so that persistent sessions are saved."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
