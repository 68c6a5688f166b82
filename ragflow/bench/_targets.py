"""Where the benchmark writes its documents: the source the server under test reads from. Each target
turns the workload's operations into writes at that source and says what a document's ``path`` metadata
ends with there, which is how a query is narrowed to one document."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol

from ._workload import Operation


class SourceTarget(Protocol):
    """A place the server under test indexes, that the benchmark can change."""

    kind: str
    """``folder``, ``s3`` or ``kafka``."""

    def apply(self, operation: Operation) -> None:
        """Make one write; return only once it is done (the freshness clock starts then)."""
        ...

    def path_suffix(self, name: str) -> str:
        """What the ``path`` metadata of document ``name`` ends with on the server."""
        ...

    def close(self) -> None:
        """Remove what the run wrote, where that makes sense."""
        ...


class FolderTarget:
    """A folder the server watches. The run writes into its own subfolder (``freshness-<id>``), so an
    attached server's other documents are left alone; ``close`` removes the subfolder."""

    kind = "folder"

    def __init__(self, folder: Path, run_id: str | None = None, *, keep: bool = False) -> None:
        self.subfolder = f"freshness-{run_id or uuid.uuid4().hex[:8]}"
        self.root = Path(folder).resolve() / self.subfolder
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def apply(self, operation: Operation) -> None:
        path = self.root / operation.name
        if operation.op == "put":
            # One write call, as an editor saving a small file does; the folder source copes with a file
            # seen half-written, and a peer must too.
            with path.open("w", encoding="utf-8") as f:
                f.write(operation.text)
        elif operation.op == "remove":
            path.unlink()
        elif operation.op == "rename":
            os.rename(path, self.root / operation.new_name)
        else:
            raise ValueError(f"unknown operation {operation.op!r}")

    def path_suffix(self, name: str) -> str:
        return f"/{self.subfolder}/{name}"

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
