"""``ragflow bench freshness`` end to end against a real ragflow server (folder source, the fast hashing
embedder): the command starts it or attaches to it, and writes the table, the JSON and the report;
``--compare`` reads saved runs back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ragflow.bench import FreshnessResult, Probe, ServerProcess
from ragflow.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
SERVER_CMD = f"{sys.executable} -m tests.bench.hashing_server {{port}} {{state}} folder {{folder}}"
SMALL = ["--docs", "6", "--changes", "1", "--gap", "0.02,0.05", "--timeout", "20"]


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the server command runs ``-m tests.bench.hashing_server``


@pytest.fixture(scope="module")
def started_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp("run")
    args = [
        "bench", "freshness", "--server-cmd", SERVER_CMD, *SMALL, "--burst", "4", "--restart", "2",
        "--label", "ragflow (hashing)", "--json", str(out / "run.json"), "--report", str(out / "run.html"),
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        assert main(args) == EXIT_OK
    return out / "run.json", out / "run.html", ""


def test_a_started_ragflow_server_shows_every_kind_of_change(started_run: tuple[Path, Path, str]) -> None:
    result = FreshnessResult.load(started_run[0])
    assert result.kinds() and set(result.kinds()) == {
        "create",
        "edit",
        "rewrite",
        "append",
        "rename",
        "delete",
    }
    assert all(r.status == "visible" for r in result.records), [
        r for r in result.records if r.fresh_s is None
    ]
    assert [r.phase for r in result.records].count("burst") == 4
    assert result.initial["visible"] == 6 and result.initial["chunks"] > 0 and result.initial["startup_s"] > 0
    assert result.restart["visible"] == 2 and result.restart["ready_s"] > 0
    assert result.server_process["peak_rss_bytes"] > 10 * 2**20 and result.server_process["cpu_s"] > 0
    # ragflow's own view of each change, from /v1/inputs: when its folder source saw the write, when the
    # epoch that took it started, and when it became searchable, in that order and before the driver saw it
    views = [r for r in result.records if r.phase == "single" and r.kind != "delete"]
    assert views
    for r in views:
        assert r.fresh_s is not None
        view = r.server
        assert -0.05 < view["detected"] <= view["epoch_started"] + 0.01 <= view["indexed"] + 0.02, r
        assert view["indexed"] <= r.fresh_s + 0.01, r
        if "embedded" in view:
            assert view["epoch_started"] <= view["embedding_started"] <= view["embedded"] <= view["indexed"]
    assert any("embedded" in r.server for r in views if r.kind in ("create", "rewrite"))


def test_the_report_has_one_cdf_per_kind_and_fetches_nothing(started_run: tuple[Path, Path, str]) -> None:
    page = started_run[1].read_text()
    for kind in ("create", "edit", "rewrite", "append", "rename", "delete"):
        assert page.count(f'class="plot cdf" data-kind="{kind}"') == 1
    assert page.count('class="plot timeline"') == 1
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        json.loads(started_run[0].read_text())["run"]["url"], ""
    )


def test_compare_puts_saved_runs_side_by_side(
    started_run: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = json.loads(started_run[0].read_text())
    other["run"]["label"] = "the peer"
    (tmp_path / "peer.json").write_text(json.dumps(other))
    report = tmp_path / "both.html"
    args = ["bench", "freshness", "--compare", str(started_run[0]), str(tmp_path / "peer.json")]
    assert main([*args, "--report", str(report)]) == EXIT_OK
    table = capsys.readouterr().out
    assert "ragflow (hashing)" in table and "the peer" in table
    page = report.read_text()
    cdf = page.split('class="plot cdf" data-kind="edit"')[1].split("</figure>")[0]
    assert cdf.count("<polyline") == 2


def test_compare_refuses_a_file_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert main(["bench", "freshness", "--compare", str(tmp_path / "x.json")]) == EXIT_USAGE


def test_it_attaches_to_a_running_server_and_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "mine.txt").write_text("a document of the server's own that the run must leave alone\n")
    server = ServerProcess(SERVER_CMD, folder, tmp_path / "state", 0.0)
    probe = Probe(server.url)
    server.start(probe, 120)
    try:
        args = ["bench", "freshness", "--url", server.url, "--folder", str(folder), *SMALL]
        assert (
            main([*args, "--burst", "3", "--kinds", "edit,delete", "--json", str(tmp_path / "r.json")]) == 0
        )
    finally:
        server.stop()
        probe.close()
    result = FreshnessResult.load(tmp_path / "r.json")
    assert result.initial["visible"] == 6 and len(result.records) == 5
    assert all(r.status == "visible" for r in result.records)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]


def test_usage_errors_say_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "freshness"]) == EXIT_USAGE
    assert "--server-cmd" in capsys.readouterr().err
    assert main(["bench", "freshness", "--url", "http://127.0.0.1:9"]) == EXIT_USAGE
    assert "--folder" in capsys.readouterr().err
    assert main(["bench", "freshness", "--server-cmd", "x", "--kinds", "edit,move"]) == EXIT_USAGE
    assert "--kinds" in capsys.readouterr().err


def test_the_bench_subcommands_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for bench in ("freshness", "scale"):
        with pytest.raises(SystemExit) as exited:
            main(["bench", bench, "--help"])
        assert exited.value.code == 0
    assert "--chunks" in capsys.readouterr().out
