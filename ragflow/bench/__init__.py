"""``ragflow bench``: benchmarks of a live index, run against ragflow or any server with the same REST API.

``freshness`` drives a source (a folder, an S3 bucket, a Kafka topic) and measures, through
``/v1/retrieve``, ``/v1/statistics`` and ``/v1/inputs`` only, how long each change takes to show in the
answers. Results go to a terminal table, a JSON file of every record, and a self-contained HTML report;
several runs compare side by side. ``scale`` times one change at growing index sizes, in process.

    from ragflow.bench import FreshnessOptions, run_freshness, freshness_table

    result = run_freshness(FreshnessOptions(server_cmd="ragflow serve {folder} --port {port}", docs=20))
    print(freshness_table([result]))
"""

from __future__ import annotations

from ._freshness import FreshnessOptions, FreshnessRun, run_freshness
from ._probe import Probe, ProbeError
from ._report import html_report
from ._results import ChangeRecord, FreshnessResult
from ._scale import FastEmbedder, ScaleOptions, run_scale, scale_table
from ._server import ServerProcess, ServerStartError
from ._stats import Summary, percentile
from ._table import freshness_table
from ._targets import FolderTarget, SourceTarget
from ._workload import ALL_KINDS, ChangeKind, Workload

__all__ = [
    "ALL_KINDS",
    "ChangeKind",
    "ChangeRecord",
    "FastEmbedder",
    "FolderTarget",
    "FreshnessOptions",
    "FreshnessResult",
    "FreshnessRun",
    "Probe",
    "ProbeError",
    "ScaleOptions",
    "ServerProcess",
    "ServerStartError",
    "SourceTarget",
    "Summary",
    "Workload",
    "freshness_table",
    "html_report",
    "percentile",
    "run_freshness",
    "run_scale",
    "scale_table",
]
