"""Random changes to a bucket for the S3 convergence and crash tests: put, overwrite, delete, copy+delete
(a rename) and multipart put over a few prefixes, described in words for failure messages."""

from __future__ import annotations

import random
from typing import Any

from tests.test_store import paragraph

PREFIXES = ("", "a/", "b/deep/")
OPERATIONS = ("put", "put", "overwrite", "delete", "rename", "multipart")


def document(rng: random.Random) -> bytes:
    return "\n\n".join(paragraph(rng) for _ in range(rng.randint(1, 3))).encode()


def keys_of(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def random_change(client: Any, bucket: str, rng: random.Random, operation: str | None = None) -> str:
    """Apply one random change to ``bucket``; returns it in words, naming the keys it touched."""
    keys = keys_of(client, bucket)
    op = operation or rng.choice(OPERATIONS)
    new_key = f"{rng.choice(PREFIXES)}doc{rng.randrange(10**6)}.md"
    if op in ("overwrite", "delete", "rename") and not keys:
        op = "put"
    if op == "put":
        client.put_object(Bucket=bucket, Key=new_key, Body=document(rng))
        return f"put {new_key}"
    if op == "multipart":
        upload = client.create_multipart_upload(Bucket=bucket, Key=new_key)
        part = client.upload_part(
            Bucket=bucket, Key=new_key, UploadId=upload["UploadId"], PartNumber=1, Body=document(rng)
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=new_key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        return f"multipart {new_key}"
    target = rng.choice(keys)
    if op == "overwrite":
        client.put_object(Bucket=bucket, Key=target, Body=document(rng))
        return f"overwrite {target}"
    if op == "delete":
        client.delete_object(Bucket=bucket, Key=target)
        return f"delete {target}"
    client.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": target})
    client.delete_object(Bucket=bucket, Key=target)
    return f"rename {target} -> {new_key}"


def touched_keys(history: list[str]) -> set[str]:
    """Every key a list of ``random_change`` descriptions names."""
    return {word for line in history for word in line.split()[1:] if word != "->"}
