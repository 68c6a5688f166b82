"""Engine benchmarks: row-change throughput of groupby-reduce and join pipelines, the latency of one-change
epochs (synchronous and streaming) and the overhead of the batched-UDF operator. Throughput runs alternate
with a plain-Python loop doing the same dict work, so the engine's overhead shows even on a noisy machine.

The scenarios (``workloads``, ``subjects``, ``throughput``, ``latency``, ``udf``) are apart from the
measuring (``measuring``) and the Markdown report (``report``).

Run ``python -m apps.bench.engine [--quick] [--repeat N] [--disable-gc] [--profile]``: it prints a Markdown
section for docs/benchmarks.md on stdout and its progress (and ``--profile`` hotspots) on stderr.
"""
