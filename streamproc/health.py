"""A tiny asyncio HTTP server for Prometheus and for the orchestrator's probes.

* ``/metrics`` — the registry in the Prometheus text format (prometheus-client renders it);
* ``/healthz`` — 200 while the process runs its event loop;
* ``/readyz`` — 200 only while connected to the broker *and* subscribed, else 503.

Only ``GET`` and ``HEAD`` are served; anything else gets 405, unknown paths 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer"]

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT: Final = 5.0
_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


class HealthServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        before_scrape: Callable[[], None] = lambda: None,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self.registry = registry
        self.ready = ready
        self.before_scrape = before_scrape
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("metrics and health on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a request: the pure part of the server."""
        if method not in {"GET", "HEAD"}:
            return 405, "text/plain", b"only GET and HEAD\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            self.before_scrape()
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if route == "/healthz":
            return 200, "text/plain", b"alive\n"
        if route == "/readyz":
            if self.ready():
                return 200, "text/plain", b"ready: connected and subscribed\n"
            return 503, "text/plain", b"not ready: not connected to the broker\n"
        return 404, "text/plain", b"try /metrics, /healthz or /readyz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                request = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers are not needed
                method, path = _request_line(request)
                status, content_type, body = self.respond(method, path)
                head = (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode() + (b"" if method == "HEAD" else body))
                await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            logger.debug("dropped a malformed or slow HTTP request")
        finally:
            writer.close()


def _request_line(line: bytes) -> tuple[str, str]:
    parts = line.decode("latin-1").split()
    if len(parts) < 2:
        raise ValueError("not an HTTP request line")
    return parts[0], parts[1]
