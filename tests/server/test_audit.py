"""The audit log: one JSON line per record, rotated by size into ``path.1``..``path.N``, the oldest
dropped beyond ``backups``."""

from __future__ import annotations

import json
from pathlib import Path

from ragflow.server.audit import AuditLog


def test_the_audit_log_rotates_at_its_size_keeping_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"  # its folder is made
    log = AuditLog(path, max_bytes=1024, backups=2)
    try:
        for i in range(60):  # about 100 bytes a line: several rotations
            log.record("upload", key="ingest", client="10.0.0.5", document=f"upload://doc{i}.md", status=201)
    finally:
        log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in path.parent.iterdir())
    newest = [json.loads(line) for line in path.read_text().splitlines()]
    older = [json.loads(line) for line in (path.parent / "audit.jsonl.1").read_text().splitlines()]
    assert newest[-1]["document"] == "upload://doc59.md"
    assert older[-1]["document"] == f"upload://doc{59 - len(newest)}.md"  # rotated in order, no line lost
    assert set(newest[0]) == {"time", "action", "key", "client", "document", "status"}
    assert newest[0]["time"].endswith("Z") and newest[0]["action"] == "upload"
