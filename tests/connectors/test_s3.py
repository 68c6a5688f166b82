"""S3Source against a real S3 server (SeaweedFS), with a fault proxy in front of it for outages,
throttling, denied objects and objects that vanish between the listing and the GET."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from ragflow.connectors.s3 import S3Source
from ragflow.documents import DocumentSource
from ragflow.errors import ConfigError, SourceError
from ragflow.sources import position_scope
from tests.connectors.s3_helpers import DELETE, UPSERT, Recorder, counter, s3_source, uri
from tests.servers.s3 import SECRET_KEY, FaultProxy, SeaweedFS

pytest.importorskip("boto3")


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    return seaweedfs.new_bucket()


@pytest.fixture
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    proxy = FaultProxy(seaweedfs.endpoint)
    yield proxy
    proxy.close()


def put(seaweedfs: SeaweedFS, bucket: str, key: str, data: bytes) -> None:
    seaweedfs.client().put_object(Bucket=bucket, Key=key, Body=data)


def proxied_run(seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy) -> Recorder:
    """A source polling ``bucket`` through ``proxy`` every 0.1 s, its snapshot (``a.md``) emitted."""
    put(seaweedfs, bucket, "a.md", b"one")
    run = Recorder(s3_source(proxy.endpoint, bucket, poll_interval=0.1))
    run.wait_until(lambda: len(run.data()) == 1, "the snapshot")
    return run


def test_s3_source_satisfies_the_document_source_protocol() -> None:
    source = S3Source("docs")
    assert isinstance(source, DocumentSource) and position_scope(source) == "document"


def test_static_snapshot_emits_every_object_under_the_prefix_through_the_globs_with_metadata(
    seaweedfs: SeaweedFS, bucket: str
) -> None:
    for key in ("docs/a.md", "docs/sub/b.md", "docs/c.txt", "docs/drafts/d.md", "other/e.md", "docs/dir/"):
        put(seaweedfs, bucket, key, key.encode())
    source = s3_source(seaweedfs.endpoint, bucket, prefix="docs/", include=("*.md",), exclude=("/drafts",))
    run = Recorder(source, "static")
    run.thread.join(10)
    assert run.error is None
    assert run.data() == {
        uri(bucket, "docs/a.md"): b"docs/a.md",
        uri(bucket, "docs/sub/b.md"): b"docs/sub/b.md",
    }
    meta = run.state()[uri(bucket, "docs/a.md")].metadata
    assert (
        meta["path"] == uri(bucket, "docs/a.md") and meta["key"] == "docs/a.md" and meta["bucket"] == bucket
    )
    assert meta["size"] == 9 and len(meta["etag"]) == 32 and abs(meta["modified_at"] - time.time()) < 60
    assert meta["seen_at_ns"] // 10**9 == meta["seen_at"] and "version_id" not in meta


def test_polling_sees_new_changed_and_deleted_objects_within_the_poll_interval(
    seaweedfs: SeaweedFS, bucket: str
) -> None:
    put(seaweedfs, bucket, "a.md", b"one")
    run = Recorder(s3_source(seaweedfs.endpoint, bucket, poll_interval=0.2))
    try:
        run.wait_until(lambda: run.snapshot_done.is_set() and len(run.data()) == 1, "the snapshot")
        started = time.monotonic()
        put(seaweedfs, bucket, "b.md", b"two")
        run.wait_until(lambda: run.data().get(uri(bucket, "b.md")) == b"two", "the new object")
        assert time.monotonic() - started < 0.2 + 0.5
        put(seaweedfs, bucket, "a.md", b"one, edited")
        run.wait_until(lambda: run.data().get(uri(bucket, "a.md")) == b"one, edited", "the overwrite")
        seaweedfs.client().delete_object(Bucket=bucket, Key="b.md")
        run.wait_until(lambda: uri(bucket, "b.md") not in run.data(), "the delete")
        assert run.changes()[-1].kind is DELETE
    finally:
        run.stop()


def test_restart_from_position_downloads_only_what_changed(seaweedfs: SeaweedFS, bucket: str) -> None:
    for i in range(20):
        put(seaweedfs, bucket, f"k{i}.md", f"doc {i}".encode())
    first = Recorder(s3_source(seaweedfs.endpoint, bucket), "static")
    first.thread.join(10)
    position = first.position()
    put(seaweedfs, bucket, "k3.md", b"doc 3, edited")
    put(seaweedfs, bucket, "new.md", b"new")
    seaweedfs.client().delete_object(Bucket=bucket, Key="k4.md")
    source = s3_source(seaweedfs.endpoint, bucket)
    second = Recorder(source, "static", position)
    second.thread.join(10)
    assert second.error is None
    assert sorted((c.doc_id, c.kind) for c in second.changes()) == sorted(
        [(uri(bucket, "k3.md"), UPSERT), (uri(bucket, "new.md"), UPSERT), (uri(bucket, "k4.md"), DELETE)]
    )
    assert counter(source, "objects_downloaded") == 2 and counter(source, "requests", kind="get") == 2


def test_copy_then_delete_seen_in_one_listing_is_one_atomic_group(seaweedfs: SeaweedFS, bucket: str) -> None:
    put(seaweedfs, bucket, "old/name.md", b"renamed content")
    put(seaweedfs, bucket, "keep.md", b"keep")
    run = Recorder(s3_source(seaweedfs.endpoint, bucket, poll_interval=1.0))
    try:
        run.wait_until(lambda: len(run.data()) == 2, "the snapshot")
        client = seaweedfs.client()
        client.copy_object(
            Bucket=bucket, Key="new/name.md", CopySource={"Bucket": bucket, "Key": "old/name.md"}
        )
        client.delete_object(Bucket=bucket, Key="old/name.md")
        run.wait_until(lambda: uri(bucket, "new/name.md") in run.data(), "the rename")
        group = next(g for g in run.groups if any(c.doc_id == uri(bucket, "new/name.md") for c in g))
        assert [(c.doc_id, c.kind) for c in group] == [
            (uri(bucket, "old/name.md"), DELETE),
            (uri(bucket, "new/name.md"), UPSERT),
        ]
    finally:
        run.stop()


def test_multipart_object_is_read_once_and_its_overwrite_is_seen(seaweedfs: SeaweedFS, bucket: str) -> None:
    client = seaweedfs.client()

    def multipart(key: str, parts: list[bytes]) -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        done = []
        for number, part in enumerate(parts, 1):
            r = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=part
            )
            done.append({"ETag": r["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
        )

    multipart("big.txt", [b"a" * 5 * 1024 * 1024, b"tail one"])
    source = s3_source(seaweedfs.endpoint, bucket, poll_interval=0.1)
    run = Recorder(source)
    try:
        run.wait_until(lambda: len(run.data()) == 1, "the multipart object")
        assert "-" in run.state()[uri(bucket, "big.txt")].metadata["etag"]
        listings = counter(source, "listings")
        run.wait_until(lambda: counter(source, "listings") >= listings + 3, "three more listings")
        assert counter(source, "objects_downloaded") == 1  # unchanged: not read again
        multipart("big.txt", [b"b" * 5 * 1024 * 1024, b"tail two"])
        run.wait_until(
            lambda: (run.data().get(uri(bucket, "big.txt")) or b"").endswith(b"tail two"), "overwrite"
        )
    finally:
        run.stop()


def test_bad_credentials_fail_the_start_naming_them_without_the_secret(
    seaweedfs: SeaweedFS, bucket: str
) -> None:
    source = S3Source(
        bucket,
        endpoint_url=seaweedfs.endpoint,
        region="us-east-1",
        addressing_style="path",
        access_key_id="ragflow-test",
        secret_access_key="wrong-secret-value",
        max_retries=1,
    )
    run = Recorder(source, "static")
    run.thread.join(10)
    assert isinstance(run.error, SourceError)
    message = str(run.error)
    assert "rejected the credentials" in message and "access_key_id/secret_access_key" in message
    assert "wrong-secret-value" not in message and "wrong-secret-value" not in repr(source)


def test_missing_bucket_fails_the_start_naming_the_bucket(seaweedfs: SeaweedFS) -> None:
    run = Recorder(s3_source(seaweedfs.endpoint, "no-such-bucket-here"), "streaming")
    run.thread.join(10)
    assert isinstance(run.error, SourceError)
    assert "bucket 'no-such-bucket-here' does not exist" in str(run.error) and "create it" in str(run.error)


def test_denied_object_is_that_documents_error_and_is_read_once_allowed(
    seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy
) -> None:
    put(seaweedfs, bucket, "secret.md", b"hidden")
    put(seaweedfs, bucket, "open.md", b"visible")
    proxy.deny("secret.md")
    run = Recorder(s3_source(proxy.endpoint, bucket, poll_interval=0.1))
    try:
        run.wait_until(lambda: len(run.data()) == 2, "both documents")
        denied = run.state()[uri(bucket, "secret.md")]
        assert denied.data is None and denied.error is not None
        assert (
            f"access denied to {uri(bucket, 'secret.md')}" in denied.error and "s3:GetObject" in denied.error
        )
        assert run.data()[uri(bucket, "open.md")] == b"visible"
        errors_before = len([c for c in run.changes() if c.error])
        time.sleep(0.5)  # several listings retry the GET, but the same error is not emitted again
        assert len([c for c in run.changes() if c.error]) == errors_before
        proxy.denied.clear()
        run.wait_until(lambda: run.data().get(uri(bucket, "secret.md")) == b"hidden", "the granted object")
        assert run.source.status.health.healthy
    finally:
        run.stop()


def test_slowdown_is_retried_with_backoff_and_the_change_arrives(
    seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy
) -> None:
    run = proxied_run(seaweedfs, bucket, proxy)
    source = run.source
    try:
        proxy.throttle(5)  # more than max_retries=2: botocore's retries are exhausted at least once
        put(seaweedfs, bucket, "b.md", b"two")
        run.wait_until(lambda: not source.status.health.healthy, "the source to report throttling")
        assert "throttling" in (source.status.health.reason or "")
        run.wait_until(
            lambda: run.data().get(uri(bucket, "b.md")) == b"two", "the change after the throttling"
        )
        run.wait_until(lambda: source.status.health.healthy, "the source to be healthy again")
        assert counter(source, "request_errors") >= 1
    finally:
        run.stop()


def test_endpoint_down_mid_run_is_unhealthy_with_the_reason_and_recovers_without_restart(
    seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy
) -> None:
    run = proxied_run(seaweedfs, bucket, proxy)
    source = run.source
    try:
        proxy.down()
        seaweedfs.client().delete_object(Bucket=bucket, Key="a.md")
        put(seaweedfs, bucket, "b.md", b"two")
        run.wait_until(lambda: not source.status.health.healthy, "the source to notice the outage")
        reason = source.status.health.reason or ""
        assert "cannot reach the S3 endpoint" in reason and proxy.endpoint in reason
        assert uri(bucket, "a.md") in run.data()  # a failed listing deletes nothing
        proxy.up()
        run.wait_until(lambda: run.data() == {uri(bucket, "b.md"): b"two"}, "recovery", timeout=20)
        run.wait_until(lambda: source.status.health.healthy, "healthy again")
    finally:
        run.stop()


def test_object_vanishing_between_listing_and_get_is_a_delete_not_an_error(
    seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy
) -> None:
    run = proxied_run(seaweedfs, bucket, proxy)
    try:
        proxy.before_get("a.md", lambda: seaweedfs.client().delete_object(Bucket=bucket, Key="a.md"))
        put(seaweedfs, bucket, "a.md", b"one, edited")  # the next listing sees a new ETag, the GET a 404
        put(seaweedfs, bucket, "vanish.md", b"x")
        proxy.before_get(
            "vanish.md", lambda: seaweedfs.client().delete_object(Bucket=bucket, Key="vanish.md")
        )
        run.wait_until(lambda: uri(bucket, "a.md") not in run.data(), "the vanished object's delete")
        time.sleep(0.3)
        assert run.data() == {} and not any(c.error for c in run.changes())
        assert uri(bucket, "vanish.md") not in {
            c.doc_id for c in run.changes()
        }  # never seen: nothing emitted
    finally:
        run.stop()


def test_object_over_max_object_size_is_an_error_naming_the_limit_and_is_not_downloaded(
    seaweedfs: SeaweedFS, bucket: str
) -> None:
    put(seaweedfs, bucket, "big.md", b"x" * 2000)
    put(seaweedfs, bucket, "small.md", b"y")
    source = s3_source(seaweedfs.endpoint, bucket, max_object_size=1000)
    run = Recorder(source, "static")
    run.thread.join(10)
    big = run.state()[uri(bucket, "big.md")]
    assert big.data is None and big.error is not None
    assert "2000 bytes, over max_object_size (1000 bytes)" in big.error and uri(bucket, "big.md") in big.error
    assert counter(source, "objects_downloaded") == 1
    # a restart with a larger limit reads it
    larger = Recorder(s3_source(seaweedfs.endpoint, bucket, max_object_size=5000), "static", run.position())
    larger.thread.join(10)
    assert [(c.doc_id, c.data) for c in larger.changes()] == [(uri(bucket, "big.md"), b"x" * 2000)]


def test_versioned_bucket_reports_version_ids_and_a_delete_marker_is_a_delete(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket(versioned=True)
    put(seaweedfs, bucket, "v.md", b"first")
    put(seaweedfs, bucket, "v.md", b"second")
    run = Recorder(s3_source(seaweedfs.endpoint, bucket, poll_interval=0.1))
    try:
        run.wait_until(lambda: run.data().get(uri(bucket, "v.md")) == b"second", "the latest version")
        assert run.state()[uri(bucket, "v.md")].metadata["version_id"]
        seaweedfs.client().delete_object(Bucket=bucket, Key="v.md")  # makes a delete marker
        run.wait_until(lambda: uri(bucket, "v.md") not in run.data(), "the delete marker as a delete")
    finally:
        run.stop()


def test_secrets_appear_in_no_repr_log_or_status(
    seaweedfs: SeaweedFS, bucket: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ragflow")  # botocore's own DEBUG log prints request headers
    source = s3_source(proxy.endpoint, bucket, poll_interval=0.1)
    run = Recorder(source)
    try:
        run.snapshot_done.wait(10)
        proxy.down()
        run.wait_until(lambda: not source.status.health.healthy, "the outage")
        proxy.up()
        run.wait_until(lambda: source.status.health.healthy, "recovery", timeout=20)
    finally:
        run.stop()
    shown = [repr(source), str(source.status.health), *(r.getMessage() for r in caplog.records)]
    shown += [str(s) for s in source.status.counters() + source.status.gauges()]
    assert any("cannot reach the S3 endpoint" in r.getMessage() for r in caplog.records)
    assert not any(SECRET_KEY in text for text in shown)
    with_token = s3_source(proxy.endpoint, bucket, session_token="token-value-123")
    assert "token-value-123" not in repr(with_token) and SECRET_KEY not in repr(with_token)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bucket": "s3://docs"}, "bucket"),
        ({"bucket": "docs", "addressing_style": "dns"}, "addressing_style"),
        ({"bucket": "docs", "access_key_id": "k"}, "secret_access_key"),
        ({"bucket": "docs", "poll_interval": 0}, "poll_interval"),
        ({"bucket": "docs", "max_object_size": -1}, "max_object_size"),
        ({"bucket": "docs", "download_concurrency": 0}, "download_concurrency"),
        ({"bucket": "docs", "notifications": {"queue": "x"}}, "sqs_queue_url"),
        ({"bucket": "docs", "include": ["[unclosed"]}, "include"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        S3Source(**options)
