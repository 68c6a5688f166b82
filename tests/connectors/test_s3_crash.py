"""Kill -9 a store syncing an S3 bucket at random moments while objects change, change more while it is
down, restart: the index equals a from-scratch build (nothing lost, nothing duplicated) and the restart
reads only objects that changed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.connectors.s3_changes import keys_of, random_change, touched_keys
from tests.connectors.s3_helpers import s3_source
from tests.connectors.test_s3_store import from_scratch
from tests.servers.s3 import SeaweedFS
from tests.test_store import LONG_MODE

pytest.importorskip("boto3")

REPO = Path(__file__).resolve().parents[2]
TRIALS = 50 if LONG_MODE else 3


def child(seaweedfs: SeaweedFS, bucket: str, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.s3_crash_child", seaweedfs.endpoint, bucket, str(state), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise AssertionError(
            f"the child did not get ready: {line!r}; stderr: {process.communicate()[1][-2000:]}"
        )


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_at_random_then_restart_loses_nothing_duplicates_nothing_rereads_only_changes(
    seaweedfs: SeaweedFS, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(trial)
    bucket, client = seaweedfs.new_bucket(), seaweedfs.client()
    for _ in range(12):
        random_change(client, bucket, rng, "put")
    state = tmp_path / "state"
    initial = set(keys_of(client, bucket))
    history: list[str] = []
    for _kill in range(2):
        process = child(seaweedfs, bucket, state)
        wait_ready(process)
        history += [random_change(client, bucket, rng) for _ in range(rng.randint(1, 6))]
        time.sleep(rng.uniform(0.0, 0.6))  # the kill lands anywhere: listing, embedding, checkpointing
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        history += [random_change(client, bucket, rng) for _ in range(rng.randint(0, 4))]  # while down
    dump = child(seaweedfs, bucket, state, "--dump")
    out, err = dump.communicate(timeout=120)
    assert dump.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    expected = [list(row) for row in from_scratch(s3_source(seaweedfs.endpoint, bucket))]
    assert result["contents"] == expected, (
        f"after {history}: the restarted index differs from a from-scratch build"
    )
    # the child says ready once its snapshot is checkpointed: only objects changed since may be read again
    unchanged = initial - touched_keys(history)
    reread = set(result["downloaded"]) & unchanged
    assert not reread, f"unchanged objects read again after the restart: {sorted(reread)}"
