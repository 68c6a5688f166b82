"""The S3 source's public face: ``S3Source``, its options and their checks, and the boto3 clients it makes
(credentials from the options or the standard AWS chain, never printed). The work of one run is in
``sync``; the S3 calls in ``bucket``, the SQS notifications in ``notifications``."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ragflow.errors import ConfigError
from ragflow.filters import glob_patterns, globmatch
from ragflow.sources import CheckpointWait, EmitChanges, SourceStatus

__all__ = ["S3Source"]

AddressingStyle = Literal["auto", "virtual", "path"]


class S3Source:
    """Documents from the objects of an S3 bucket (AWS, MinIO, SeaweedFS, R2, Ceph), one per object under
    ``prefix``; ``doc_id`` and ``path`` are ``s3://<bucket>/<key>``.

    Changes are found by listing (paginated ListObjectsV2) every ``poll_interval`` seconds, or, with
    ``notifications``, from S3 event notifications delivered to an SQS queue plus a full listing every
    ``reconcile_interval`` seconds that repairs whatever a lost notification left out. An object is read
    again only when its ETag changes (and, where the ETag is not a content digest, such as a multipart
    upload's, its size or LastModified); its position, saved with the document in each checkpoint, is that
    version, so a restart downloads only what changed while ragflow was down.

    Args:
        bucket: The bucket's name.
        prefix: Only keys starting with this; globs match the rest of the key.
        include: Glob patterns (``ragflow.filters.globmatch``) the key below ``prefix`` must match; a
            leading ``/`` anchors at the prefix, otherwise ``*.md`` matches at any depth (as for folders).
        exclude: Glob patterns that drop a key; one that matches a "directory" drops everything below it.
        endpoint_url: Another S3 server (MinIO, SeaweedFS, R2...), e.g. ``http://127.0.0.1:9000``.
        region: The bucket's region (``us-east-1`` when unset and the environment names none).
        addressing_style: ``path`` for most self-hosted servers, ``virtual`` or ``auto`` (AWS).
        access_key_id: Explicit credentials; when unset, the standard AWS chain (environment, ``profile``,
            shared files, instance or container role) is used.
        secret_access_key: Goes with ``access_key_id``; never printed, logged or shown by ``ragflow status``.
        session_token: Temporary credentials' token (also never printed).
        profile: A profile of the shared AWS config files.
        name: The source's name in the pipeline; defaults to ``s3:<bucket>/<prefix>``.
        poll_interval: Seconds between listings without notifications.
        max_object_size: Objects larger than this many bytes become documents with an error naming the limit.
        download_concurrency: Objects downloaded at once.
        notifications: ``{"sqs_queue_url": ...}``: the queue receiving the bucket's ObjectCreated:* and
            ObjectRemoved:* events (directly or through SNS); optional ``wait_seconds`` (the long poll,
            default 1) and ``endpoint_url`` (SQS's, when not AWS).
        reconcile_interval: With notifications, seconds between full listings (default 300).
        max_retries: Attempts per request before a failure counts (botocore's backoff with jitter).

    Example:
        >>> source = S3Source("docs", prefix="handbook/", include=("*.md",),
        ...                   endpoint_url="http://127.0.0.1:8333", addressing_style="path")
        >>> source.name
        's3:docs/handbook/'
    """

    position_scope = "document"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        include: Sequence[str] = ("**/*",),
        exclude: Sequence[str] = (),
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: AddressingStyle = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        name: str | None = None,
        poll_interval: float = 1.0,
        max_object_size: int = 50 * 1024 * 1024,
        download_concurrency: int = 8,
        notifications: Mapping[str, Any] | None = None,
        reconcile_interval: float = 300.0,
        max_retries: int = 4,
    ) -> None:
        if not bucket or not isinstance(bucket, str) or "/" in bucket:
            raise ConfigError(f"S3Source bucket must be a bucket name (no 's3://', no '/'), got {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.include = glob_patterns("S3Source", "include", include)
        self.exclude = glob_patterns("S3Source", "exclude", exclude)
        if not self.include:
            raise ConfigError("S3Source include must list at least one glob pattern, e.g. '**/*'")
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        if addressing_style not in ("auto", "virtual", "path"):
            raise ConfigError(
                f"S3Source addressing_style must be 'auto', 'virtual' or 'path', got {addressing_style!r}"
            )
        self.addressing_style = addressing_style
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError("S3Source access_key_id and secret_access_key go together: set both or neither")
        self.access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self.profile = profile
        self.name = name if name is not None else f"s3:{bucket}/{prefix}"
        self.poll_interval = _positive("poll_interval", poll_interval)
        if not isinstance(max_object_size, int) or max_object_size <= 0:
            raise ConfigError(
                f"S3Source max_object_size must be a positive byte count, got {max_object_size!r}"
            )
        self.max_object_size = max_object_size
        if not isinstance(download_concurrency, int) or download_concurrency < 1:
            raise ConfigError(
                f"S3Source download_concurrency must be at least 1, got {download_concurrency!r}"
            )
        self.download_concurrency = download_concurrency
        self.notifications = _notifications(notifications)
        self.reconcile_interval = _positive("reconcile_interval", reconcile_interval)
        if not isinstance(max_retries, int) or max_retries < 1:
            raise ConfigError(f"S3Source max_retries must be at least 1, got {max_retries!r}")
        self.max_retries = max_retries
        self.status = SourceStatus()
        """Health (with the reason) and counters for ``/v1/sources`` and ``/metrics``."""
        self.wait_checkpointed: CheckpointWait | None = None
        """Set by the store: SQS messages are deleted only once their changes are in a checkpoint."""

    def __repr__(self) -> str:
        credentials = (
            "explicit" if self.access_key_id else (f"profile {self.profile}" if self.profile else "chain")
        )
        return (
            f"S3Source(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r}, "
            f"credentials={credentials}, notifications={'sqs' if self.notifications else None})"
        )

    def visible(self, key: str) -> bool:
        """Whether ``key`` is one of this source's documents (under the prefix, through the globs)."""
        if not key.startswith(self.prefix) or key.endswith("/"):
            return False
        rel = "/" + key[len(self.prefix) :].lstrip("/")
        if not any(globmatch(p, rel) for p in self.include):
            return False
        parts = rel.split("/")
        above = ["/".join(parts[:i]) for i in range(2, len(parts))]
        return not any(globmatch(p, path) for p in self.exclude for path in (rel, *above))

    def make_client(self, service: Literal["s3", "sqs"], endpoint_url: str | None = None) -> Any:
        """A boto3 client for ``service`` with this source's credentials, region and retry policy."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError(
                "the S3 source needs boto3: pip install 'ragflow[s3]' (or pip install boto3)"
            ) from None
        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self._secret_access_key,
            aws_session_token=self._session_token,
            profile_name=self.profile,
            region_name=self.region,
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": self.max_retries},
            s3={"addressing_style": self.addressing_style},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, self.download_concurrency + 2),
        )
        region = self.region or session.region_name or "us-east-1"
        endpoint = endpoint_url if service == "sqs" else self.endpoint_url
        return session.client(service, endpoint_url=endpoint, region_name=region, config=config)

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        """Emit the bucket's objects (from ``position``, ``doc_id -> version``, only what changed since),
        then, streaming, what changes until ``stop``."""
        from .sync import _S3Sync

        _S3Sync(self, emit, stop).run(mode, position)


def _positive(option: str, value: float) -> float:
    if not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"S3Source {option} must be a positive number of seconds, got {value!r}")
    return float(value)


def _notifications(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("sqs_queue_url"), str):
        raise ConfigError(
            "S3Source notifications must be a mapping with 'sqs_queue_url' (the queue that receives the "
            f"bucket's event notifications), got {value!r}"
        )
    unknown = set(value) - {"sqs_queue_url", "wait_seconds", "endpoint_url"}
    if unknown:
        raise ConfigError(
            f"S3Source notifications has unknown keys {sorted(unknown)}; "
            "allowed: sqs_queue_url, wait_seconds, endpoint_url"
        )
    wait = value.get("wait_seconds", 1)
    if not isinstance(wait, int) or not 0 <= wait <= 20:
        raise ConfigError(f"S3Source notifications.wait_seconds must be an integer 0..20, got {wait!r}")
    return {
        "sqs_queue_url": value["sqs_queue_url"],
        "wait_seconds": wait,
        "endpoint_url": value.get("endpoint_url"),
    }
