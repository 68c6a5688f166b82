"""The S3 source: a bucket (AWS, MinIO, SeaweedFS, R2, Ceph) kept in sync by listings and, optionally, S3
event notifications through SQS. ``source`` holds ``S3Source`` and its options, ``sync`` one run, ``bucket``
the S3 calls and their errors, ``notifications`` the SQS receiver."""

from .source import S3Source

__all__ = ["S3Source"]
