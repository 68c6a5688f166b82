"""The distribution installs one import name, ``ragflow``: the plugin folders at the repository root
(``connectors/``, ``indexers/``) become ``ragflow.connectors`` and ``ragflow.indexers``, and no generic
top-level ``connectors`` or ``indexers`` package is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _package_folders() -> dict[str, Path]:
    """Every package in the checkout under the import name it must install as."""
    found: dict[str, Path] = {}
    for top, name in (
        ("ragflow", "ragflow"),
        ("connectors", "ragflow.connectors"),
        ("indexers", "ragflow.indexers"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found[".".join([name, *rel.parts])] = init.parent
    return found


def test_every_package_folder_is_listed_for_the_build() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    missing = sorted(set(_package_folders()) - listed)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert not any(p.split(".")[0] in {"connectors", "indexers"} for p in listed)


def test_entry_points_name_the_namespaced_modules() -> None:
    groups = _pyproject()["project"]["entry-points"]
    for group in ("ragflow.connectors", "ragflow.indexers"):
        for name, target in groups[group].items():
            assert target.startswith(group + "."), f"{group} entry point {name!r} targets {target!r}"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


_SMOKE = textwrap.dedent(
    """
    import importlib.util, sys, tempfile, pathlib
    import ragflow
    assert "site-packages" in ragflow.__file__, ragflow.__file__
    for gone in ("connectors", "indexers"):
        assert importlib.util.find_spec(gone) is None, f"{gone} is importable at top level"
    from ragflow import DocumentStore
    from ragflow.connectors.folder import FolderSource
    from ragflow.indexers.faiss import FaissIndex
    from ragflow.plugins import load_connector, load_indexer
    assert load_connector("folder") is FolderSource and load_indexer("faiss") is FaissIndex
    sys.path.insert(0, sys.argv[1])
    from tests.fakes.hashing_embedder import HashingEmbedder
    with tempfile.TemporaryDirectory() as docs:
        pathlib.Path(docs, "a.txt").write_text("the quick brown fox jumps over the lazy dog")
        pathlib.Path(docs, "b.txt").write_text("a completely different note about sorting lists")
        embedder = HashingEmbedder()
        with DocumentStore(FolderSource(docs), embedder=embedder, index=FaissIndex(embedder.dim)) as store:
            store.wait_until_fresh(timeout=60)
            hits = store.retrieve("quick brown fox", k=1)
    assert hits and hits[0].metadata["path"].endswith("a.txt"), hits
    from ragflow.server.web import page
    html, policy = page()  # the web page's HTML, style and script, read from the installed package
    assert b"<!--app." not in html and b"function el(" in html and b"--accent" in html, html[:200]
    print("wheel ok")
    """
)


def test_a_built_wheel_installs_only_the_ragflow_name(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build leaves build/ and *.egg-info behind in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for top in ("ragflow", "connectors", "indexers"):
        shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            source,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("ragflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "app.css", "app.js"):  # the web page, served by ragflow/server/web.py
        assert f"ragflow/server/page/{asset}" in names, f"{asset} is not in the wheel (package-data)"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Borrow this environment's dependencies (a path line only: its .pth files, the editable
    # install's finder among them, are not run), so no second torch is installed.
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [python, "-c", _SMOKE, str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "wheel ok" in run.stdout
