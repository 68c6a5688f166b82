"""The small HTTP client that ``query`` and ``status`` talk to a server with, and their options for it:
JSON over ``urllib`` (nothing heavy to import), with errors that say what to do."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ragflow.cli._errors import CommandError, ServerUnreachableError
from ragflow.errors import ConfigError

DEFAULT_PORT = 8000
"""``server.port``'s default; ``query`` and ``status`` use it without importing the config module."""
URL_ENV = "RAGFLOW_URL"
API_KEY_ENV = "RAGFLOW_API_KEY"
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that talks to a server: where it is, its API key, how long to wait."""
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the server (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"the server's API key, if it needs one (default: ${API_KEY_ENV})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")


class Client:
    """JSON over HTTP to a ragflow server, with errors that say what to do."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"--url must be an http(s) URL such as {DEFAULT_URL}, got {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        # A proxy from the environment must not swallow requests to this machine.
        proxies: dict[str, str] | None = {} if is_loopback(parsed.hostname) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def get(self, path: str) -> Any:
        return self._send(path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._send(path, json.dumps(body).encode())

    def status_of(self, path: str) -> tuple[int, Any]:
        """The HTTP status and JSON body of ``GET path``, whatever the status."""
        try:
            return 200, self._send(path, None)
        except HttpError as exc:
            return exc.status, exc.body

    def _send(self, path: str, data: bytes | None) -> Any:
        request = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise HttpError(self.url + path, exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(exc) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise CommandError(f"{self.url}{path} did not answer JSON: is it a ragflow server?") from None

    def _unreachable(self, reason: object) -> ServerUnreachableError:
        if isinstance(reason, TimeoutError | socket.timeout):
            reason = f"no answer within {self.timeout:g} s"
        return ServerUnreachableError(
            f"no ragflow server answers at {self.url} ({reason}). Start one with `ragflow serve PATH` "
            f"(or `ragflow serve --config app.yaml`), or point --url or ${URL_ENV} at a running server"
        )


class HttpError(CommandError):
    """The server answered with an error status."""

    def __init__(self, url: str, error: urllib.error.HTTPError) -> None:
        self.status = error.code
        try:
            self.body: Any = json.loads(error.read())
        except (ValueError, OSError):
            self.body = None
        message = error_message(self.body) or error.reason
        hint = ""
        if error.code in (401, 403):
            hint = f"; pass the server's API key with --api-key or ${API_KEY_ENV}"
        super().__init__(f"{url}: HTTP {error.code}: {message}{hint}")


def error_message(body: Any) -> str | None:
    """The message in a ragflow error body (``{"error": {"message"}}`` or ``{"detail"}``), if any."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail"):
            return str(body["detail"])
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
