"""Who is calling: named API keys with a role and an optional scope, kept only as SHA-256 digests and
compared in constant time, and the count of bad-key requests per client that turns them into 429s.

The roles nest: ``read`` < ``write`` < ``admin``; each may do what the roles below it may (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ragflow.errors import ConfigError

from .scopes import Scope

if TYPE_CHECKING:
    from ragflow.config import ServerConfig

__all__ = ["LEGACY_KEY_NAME", "ApiKey", "AuthFailures", "KeyRing", "Role", "key_digest"]

LEGACY_KEY_NAME = "api_key"
"""The name ``server.api_key`` (the single key of earlier versions) goes by: an admin key."""


class Role(IntEnum):
    """What a key may do; a higher role may do everything a lower one may."""

    READ = 1
    """Retrieve, answer, chat, list inputs, statistics and errors (of its scope), read the schema."""
    WRITE = 2
    """Also upload and delete documents (inside its scope)."""
    ADMIN = 3
    """Also read ``/metrics`` and everything operational; never scoped."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, label: str) -> Role:
        return cls[label.upper()]


def key_digest(secret: str | bytes) -> bytes:
    """The SHA-256 a key is kept and compared as."""
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key the server accepts: its name (for logs), role, scope (``None``: every document) and digest."""

    name: str
    role: Role
    digest: bytes = field(repr=False)
    scope: Scope | None = None

    def __post_init__(self) -> None:
        if self.role is Role.ADMIN and self.scope is not None:
            raise ConfigError(f"API key {self.name!r}: an admin key cannot have a scope")


class KeyRing:
    """The keys a server accepts. ``find`` hashes what a client sent and compares it with every key's
    digest in constant time, so neither a key's bytes nor which key matched shows in the timing."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        names = [key.name for key in self.keys]
        if len(set(names)) != len(names):
            raise ConfigError(f"API key names must be unique, got {sorted(names)}")
        digests = [key.digest for key in self.keys]
        if len(set(digests)) != len(digests):
            raise ConfigError("two API keys have the same secret; give each key its own")

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, secret: bytes) -> ApiKey | None:
        """The key whose secret is ``secret``, or ``None``."""
        digest = key_digest(secret)
        found = None
        for key in self.keys:  # no early exit: every request costs the same whichever key it carries
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    @classmethod
    def of(cls, api_key: str | None = None, api_keys: Sequence[ApiKey] = ()) -> KeyRing:
        """``api_keys`` plus the single ``api_key`` of earlier versions as an admin key named ``api_key``."""
        legacy = [ApiKey(LEGACY_KEY_NAME, Role.ADMIN, key_digest(api_key))] if api_key else []
        return cls([*legacy, *api_keys])

    @classmethod
    def from_config(cls, server: ServerConfig) -> KeyRing:
        """The keys of a ``server`` configuration section; ``key_file`` secrets are read now.

        Raises:
            ConfigError: a key file cannot be read or is empty (the message names the file, never the
                secret), or two keys share a secret.
        """
        keys = []
        for entry in server.api_keys:
            if entry.key_sha256 is not None:
                digest = bytes.fromhex(entry.key_sha256)
            elif entry.key_file is not None:
                digest = key_digest(_secret_from_file(entry.name, Path(entry.key_file)))
            else:
                digest = key_digest(str(entry.key))
            scope = (
                Scope(entry.scope.filepath_globpattern, entry.scope.metadata_filter)
                if entry.scope is not None
                else None
            )
            keys.append(ApiKey(entry.name, Role.of(entry.role), digest, scope))
        return cls.of(server.api_key, keys)


def _secret_from_file(name: str, path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API key {name!r}: cannot read key_file {path}: {exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"API key {name!r}: key_file {path} must hold a secret of at least 16 characters")
    return secret


class AuthFailures:
    """Bad-key requests per client address over a sliding window: once a client has made ``limit`` of
    them within ``window`` seconds, its further bad-key requests are refused (429) until the oldest
    leaves the window. Requests with a good key are never counted or refused here.

    Memory is bounded: at most ``limit`` timestamps per client, and at most ``max_clients`` clients (the
    ones seen longest ago are forgotten first)."""

    def __init__(self, limit: int, window: float, max_clients: int = 10_000) -> None:
        if limit < 1 or window <= 0:
            raise ConfigError(f"bad-key limits must be positive, got {limit} failures in {window} s")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try a key again, or ``None`` when it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return None
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[client]
                return None
            return times[0] + self.window - now if len(times) >= self.limit else None

    def record(self, client: str, now: float | None = None) -> bool:
        """Count a bad-key request; ``True`` when this one reached the limit (the client is now refused)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.pop(client, None) or deque(maxlen=self.limit)
            self._failures[client] = times  # re-inserted: the dict's order is least recently failed first
            times.append(now)
            if len(self._failures) > self.max_clients:
                del self._failures[next(iter(self._failures))]
            return len(times) == self.limit and times[0] > now - self.window
