"""The S3 calls the source makes (paginated LIST, conditional GET, HEAD) through one boto3 client, each
counted in the source's status, and every failure turned into an ``S3Failure`` whose message names the
bucket or object and says what to do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragflow.errors import SourceError
from ragflow.sources import SourceStatus

if TYPE_CHECKING:
    from .source import S3Source

__all__ = ["Bucket", "Fetched", "ListedObject", "S3Failure"]

# Error codes that mean the configuration is wrong (not a passing outage); retrying will not help.
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"}
)
_DENIED_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled", "Forbidden"})
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"})


class S3Failure(SourceError):
    """An S3 call failed. ``transient`` failures (endpoint down, throttling, 5xx) are retried with backoff
    while the source reports itself unhealthy; the others need a change of configuration or permissions."""

    def __init__(self, message: str, *, transient: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object as LIST (or HEAD) shows it."""

    key: str
    etag: str
    size: int
    modified_ns: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of a conditional GET: the bytes, or ``unchanged`` (304), or ``gone`` (404)."""

    data: bytes | None = None
    listed: ListedObject | None = None
    version_id: str | None = None
    unchanged: bool = False
    gone: bool = False


class Bucket:
    """The bucket of one ``S3Source``: LIST/GET/HEAD, each request counted in ``status``."""

    def __init__(self, config: S3Source, status: SourceStatus) -> None:
        self.name = config.bucket
        self.status = status
        self._config = config
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._config.make_client("s3")
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def list(self, prefix: str) -> Iterator[ListedObject]:
        """Every object under ``prefix`` in key order, page by page; raises ``S3Failure`` part-way
        rather than ending early (an ended listing would read as deletes)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", None, self.client.list_objects_v2, **kwargs)
            contents = page.get("Contents", [])
            self.status.count("objects_listed", len(contents))
            for item in contents:
                yield ListedObject(
                    item["Key"], _etag(item.get("ETag")), int(item.get("Size", 0)), _ns(item["LastModified"])
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise S3Failure(
                    f"listing of s3://{self.name}/{prefix} is truncated but gave no continuation token; "
                    "the endpoint does not implement ListObjectsV2 pagination",
                    transient=False,
                )

    def fetch(self, key: str, if_none_match: str | None, max_size: int) -> Fetched:
        """GET ``key`` unless its ETag is still ``if_none_match``; an object over ``max_size`` bytes is not
        downloaded (``listed`` says its size, ``data`` is ``None``)."""
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if if_none_match:
            kwargs["IfNoneMatch"] = f'"{if_none_match}"'
        try:
            response = self._call("get", key, self.client.get_object, **kwargs)
        except S3Failure as exc:
            if exc.code in _MISSING_KEY_CODES:
                return Fetched(gone=True)
            if exc.code in ("304", "NotModified"):
                return Fetched(unchanged=True)
            raise
        listed = ListedObject(
            key,
            _etag(response.get("ETag")),
            int(response.get("ContentLength", 0)),
            _ns(response["LastModified"]),
        )
        version = response.get("VersionId")
        version = version if version and version != "null" else None
        body = response["Body"]
        try:
            if listed.size > max_size:
                return Fetched(listed=listed, version_id=version)
            data = self._read(key, body, max_size)
        finally:
            body.close()
        self.status.count("objects_downloaded")
        self.status.count("bytes_downloaded", len(data))
        return Fetched(data=data, listed=listed, version_id=version)

    def check(self, prefix: str) -> None:
        """One cheap LIST: raises ``S3Failure`` naming the problem (credentials, bucket, endpoint)."""
        self._call("list", None, self.client.list_objects_v2, Bucket=self.name, Prefix=prefix, MaxKeys=1)

    def _read(self, key: str, body: Any, max_size: int) -> bytes:
        try:
            data: bytes = body.read(max_size + 1)
        except Exception as exc:
            raise S3Failure(
                f"reading {self.uri(key)} broke off: {type(exc).__name__}: {exc}; it is read again "
                "on the next poll",
                transient=True,
            ) from exc
        return data

    def _call(self, kind: str, key: str | None, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        self.status.count("requests", kind=kind)
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            self.status.count("request_errors", kind=kind)
            raise self._failure(exc, key) from None

    def _failure(self, exc: Exception, key: str | None) -> S3Failure:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        if isinstance(exc, ClientError):
            return self._client_failure(exc, key)
        if isinstance(exc, NoCredentialsError):
            message = (
                f"no AWS credentials found for bucket {self.name!r}: set access_key_id/secret_access_key, "
                "a profile, the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables or an instance role"
            )
            return S3Failure(message, transient=False, code="NoCredentials")
        if isinstance(exc, EndpointConnectionError):
            endpoint = exc.kwargs.get("endpoint_url") or self._config.endpoint_url
            message = (
                f"cannot reach the S3 endpoint {endpoint} for bucket {self.name!r}; is the server up and "
                "endpoint_url right? Retrying with backoff"
            )
            return S3Failure(message, transient=True, code="EndpointConnectionError")
        message = (
            f"S3 request to bucket {self.name!r} failed: {type(exc).__name__}: {exc}; retrying with backoff"
        )
        return S3Failure(message, transient=True, code=type(exc).__name__)

    def _client_failure(self, exc: Any, key: str | None) -> S3Failure:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        what = self.uri(key) if key is not None else f"bucket {self.name!r}"
        if code in _CREDENTIAL_CODES:
            return S3Failure(
                f"S3 rejected the credentials for {what} ({code}); check access_key_id/secret_access_key "
                "(or the profile / environment) and the region",
                transient=False,
                code=code,
            )
        if code == "NoSuchBucket":
            return S3Failure(
                f"bucket {self.name!r} does not exist at {self._config.endpoint_url or 'AWS S3'}; "
                "create it or fix 'bucket' (and 'endpoint_url'/'region')",
                transient=False,
                code=code,
            )
        if code in _DENIED_CODES:
            action = "s3:GetObject" if key is not None else "s3:ListBucket"
            return S3Failure(
                f"access denied to {what} ({code}); grant {action} to these credentials, or exclude it",
                transient=False,
                code=code,
            )
        if code in _THROTTLE_CODES:
            return S3Failure(
                f"S3 is throttling requests to {what} ({code}) even after retries; backing off",
                transient=True,
                code=code,
            )
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or "no message"
        return S3Failure(
            f"S3 error on {what}: {code}: {message}",
            transient=status >= 500 or code in _MISSING_KEY_CODES or code in ("304", "NotModified"),
            code=code,
        )


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _ns(value: dt.datetime) -> int:
    return int(value.timestamp() * 1_000_000_000)
