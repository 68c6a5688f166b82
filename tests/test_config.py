"""The YAML configuration: every kind of mistake is reported with file, line, key path and what is allowed;
${ENV} interpolation; defaults; plugin options checked against constructors; a full config round-trips and
builds a working store."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ragflow.config import (
    InvalidConfigError,
    RagflowConfig,
    load_config,
    parse_config,
)
from ragflow.errors import ConfigError
from ragflow.persistence import IncompatibleStateError
from tests.fakes.hashing_embedder import HashingEmbedder

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> InvalidConfigError:
    with pytest.raises(InvalidConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value


# -- defaults ------------------------------------------------------------------------------------------


def test_a_folder_alone_needs_no_file_and_gets_the_defaults(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    config = RagflowConfig.for_folder("docs")
    assert [(s.kind, s.options) for s in config.sources] == [("folder", {"root": str(tmp_path / "docs")})]
    assert (config.embedder.kind, config.embedder.options) == ("local", {})
    assert (config.index.kind, config.index.options) == ("faiss", {})
    assert config.parser.kind == "default"
    assert (config.splitter.max_tokens, config.splitter.overlap) == (None, 0)
    assert (config.server.host, config.server.port, config.server.api_key) == ("127.0.0.1", 8000, None)
    assert (config.server.max_k, config.server.max_request_bytes) == (100, 10_000_000)
    assert config.persistence.state_dir == str(tmp_path / ".ragflow")
    assert config.llm is None and config.llm_settings() is None


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        RagflowConfig.for_folder(tmp_path / "nope")


def test_an_empty_file_is_all_defaults_without_sources(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing yet\n"))
    assert config.sources == [] and config.server.port == 8000


# -- mistakes and their messages -----------------------------------------------------------------------


def test_an_unknown_key_names_file_line_path_suggestion_and_allowed_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        sources:
          - kind: folder
            root: docs
            max_file_sise: 1000
        """,
    )
    (problem,) = problems_of(path).problems
    assert (problem.file, problem.line, problem.path) == (str(path), 4, "sources[0].max_file_sise")
    assert "did you mean 'max_file_size'?" in problem.message.lower()
    assert "allowed keys: kind, root, include, exclude" in problem.message.lower()
    assert str(problem).startswith(f"{path}:4: sources[0].max_file_sise: unknown key 'max_file_sise'")


def test_an_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "sever:\n  port: 1\n")).problems
    assert (problem.line, problem.path) == (1, "sever")
    assert "Did you mean 'server'?" in problem.message
    assert "persistence" in problem.message  # the allowed sections are listed


def test_an_unknown_key_inside_a_section(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  port: 1\n  max_kk: 5\n")).problems
    assert (problem.line, problem.path) == (3, "server.max_kk")
    assert "Did you mean 'max_k'?" in problem.message
    assert "host, port, api_key, max_k, max_request_bytes" in problem.message


def test_a_wrong_type_names_key_line_and_value(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  host: 0.0.0.0\n  port: eighty\n")).problems
    assert (problem.line, problem.path) == (3, "server.port")
    assert "valid integer" in problem.message and "'eighty'" in problem.message


def test_an_out_of_range_value(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  port: 70000\n")).problems
    assert problem.path == "server.port" and "less than or equal to 65535" in problem.message


def test_a_secret_is_never_echoed_in_a_message(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  api_key: [s3cret]\n")).problems
    assert problem.path == "server.api_key" and "s3cret" not in problem.message


def test_a_choice_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "index:\n  kind: faiss\n  faiss_kind: hnws\n")
    (problem,) = problems_of(path).problems
    assert (problem.line, problem.path) == (3, "index.faiss_kind")
    assert "'flat' or 'hnsw'" in problem.message and "'hnws'" in problem.message


def test_a_string_where_a_list_is_expected_says_how_to_write_it(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - kind: folder\n    root: d\n    include: '*.md'\n")
    (problem,) = problems_of(path).problems
    assert (problem.line, problem.path) == (4, "sources[0].include")
    assert "write it as a list" in problem.message


def test_a_missing_required_option_points_at_its_source(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "sources:\n  - kind: folder\n")).problems
    assert (problem.line, problem.path) == (2, "sources[0].root")
    assert "missing required key 'root' for a 'folder' source" in problem.message


def test_a_source_without_kind(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "sources:\n  - root: docs\n")).problems
    assert (problem.line, problem.path) == (2, "sources[0]")
    assert "missing required key 'kind'" in problem.message and "folder" in problem.message


def test_an_uninstalled_source_kind_lists_the_installed_ones(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "sources:\n  - kind: sharepoint\n    site: docs\n")).problems
    assert (problem.line, problem.path) == (2, "sources[0].kind")
    assert "unknown source 'sharepoint'" in problem.message
    assert "installed sources are folder" in problem.message
    assert "pip install 'ragflow[sharepoint]'" in problem.message


def test_a_misspelt_source_kind_is_a_typo_not_a_missing_package(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "sources:\n  - kind: foldr\n    root: d\n")).problems
    assert "Did you mean 'folder'?" in problem.message and "pip install" not in problem.message


def test_embedder_kinds_and_options_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        embedder:
          kind: openai
          base_url: http://127.0.0.1:1/v1
          batch_size: many
        """,
    )
    messages = {p.path: p for p in problems_of(path).problems}
    assert "missing required key 'model' for a 'openai' embedder" in messages["embedder.model"].message
    assert messages["embedder.batch_size"].line == 4
    (problem,) = problems_of(write(tmp_path, "embedder:\n  kind: locall\n", "b.yaml")).problems
    assert "Did you mean 'local'?" in problem.message and "local, openai" in problem.message


def test_a_missing_environment_variable_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "# ${IN_A_COMMENT} is fine\nllm:\n  model: m\n  api_key: ${OPENAI_KEY}\n")
    (problem,) = problems_of(path, environ={}).problems
    assert (problem.line, problem.path) == (4, "llm.api_key")
    assert "environment variable OPENAI_KEY is not set" in problem.message
    assert "${OPENAI_KEY:-default}" in problem.message


def test_a_malformed_reference_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  host: ${HOST\n")).problems
    assert (problem.line, problem.path) == (2, "server.host") and "malformed reference" in problem.message


def test_invalid_yaml_reports_its_line(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  port: 1\n  host: [unclosed\n")).problems
    assert problem.message.startswith("invalid YAML") and problem.line is not None and problem.line >= 3


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "server:\n  port: 1\n  port: 2\n")).problems
    assert (problem.line, problem.path) == (3, "server.port") and "first given on line 2" in problem.message


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        server:
          port: x
        sources:
          - kind: folder
            root: d
            colour: blue
        splitter:
          overlap: -1
        """,
    )
    error = problems_of(path)
    assert [(p.line, p.path) for p in error.problems] == [
        (2, "server.port"),
        (6, "sources[0].colour"),
        (8, "splitter.overlap"),
    ]
    assert str(error).startswith("3 problems in the configuration:\n")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


# -- interpolation -------------------------------------------------------------------------------------


def test_environment_references_and_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        server:
          host: ${HOST}
          port: ${PORT:-8100}
          api_key: ${EMPTY:-fallback}
          max_k: "${MAX_K}"
        llm:
          model: model-${SUFFIX}-$${NOT_A_REFERENCE}
          api_key: ${UNSET_KEY:-}
          base_url: "${UNSET_URL:-http://127.0.0.1:11434/v1}"
        persistence:
          state_dir: ${UNSET_DIR:-}
        """,
    )
    env = {"HOST": "0.0.0.0", "EMPTY": "", "MAX_K": "7", "SUFFIX": "x"}
    config = load_config(path, environ=env)
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 8100  # a default, typed by the schema
    assert config.server.api_key == "fallback"  # ":-" also replaces a set but empty variable
    assert config.server.max_k == 7
    assert config.llm is not None and config.llm.model == "model-x-${NOT_A_REFERENCE}"
    assert config.llm.api_key is None  # empty means no key
    assert config.llm.base_url == "http://127.0.0.1:11434/v1"
    assert config.persistence.state_dir is None  # an unquoted empty value is YAML's null


def test_a_number_like_secret_stays_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  api_key: ${KEY}\n")
    assert load_config(path, environ={"KEY": "0123"}).server.api_key == "0123"


def test_an_llm_without_a_model_name_is_off(tmp_path: Path) -> None:
    path = write(tmp_path, "llm:\n  model: ${RAGFLOW_LLM_MODEL:-}\n  api_key: k\n")
    assert load_config(path, environ={}).llm_settings() is None
    settings = load_config(path, environ={"RAGFLOW_LLM_MODEL": "llama3"}).llm_settings()
    assert settings is not None and (settings.model, settings.api_key) == ("llama3", "k")


def test_an_llm_base_url_that_is_not_http_is_refused_with_its_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "llm:\n  model: m\n  base_url: localhost:11434\n"))
    with pytest.raises(InvalidConfigError, match=r"app.yaml:1: llm: LLM base_url must be an http"):
        config.llm_settings()


# -- paths, anchors and plugins ------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_file(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path / "conf",
        """
        sources:
          - kind: folder
            root: ../docs
        embedder:
          kind: local
          model_path: ~/models/mini
        persistence:
          state_dir: state
        """,
    )
    config = load_config(path)
    assert config.sources[0].options["root"] == str(tmp_path / "docs")
    assert config.embedder.options["model_path"] == str(Path.home() / "models" / "mini")
    assert config.persistence.state_dir == str(tmp_path / "conf" / "state")


def test_extension_keys_hold_anchors_for_merges(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        x-folder: &folder
          kind: folder
          exclude: ["*.tmp"]
        sources:
          - <<: *folder
            root: a
            name: first
          - <<: *folder
            root: b
            exclude: []
        """,
    )
    first, second = load_config(path).sources
    assert (first.kind, first.options["exclude"], first.options["name"]) == ("folder", ["*.tmp"], "first")
    assert second.options["exclude"] == []  # a key given explicitly wins over the merged one


def test_a_new_source_kind_is_checked_against_its_own_constructor(tmp_path: Path, monkeypatch: Any) -> None:
    """Nothing in the config module knows the folder source: any registered class gets the same checks."""

    class BucketSource:
        def __init__(
            self, bucket: str, kind: str = "s3", prefix: str = "", cache: Path | None = None
        ) -> None:
            self.name = f"bucket:{bucket}"

    def load(name: str) -> Any:
        assert name == "bucket"
        return BucketSource

    monkeypatch.setattr("ragflow.config.factories.load_connector", load)
    monkeypatch.setattr("ragflow.config.factories.available", lambda group: ["bucket", "folder"])
    good = write(tmp_path, "sources:\n  - kind: bucket\n    bucket: b\n    bucket_kind: gcs\n    cache: c\n")
    (source,) = load_config(good).sources
    assert source.options == {"bucket": "b", "bucket_kind": "gcs", "cache": str(tmp_path / "c")}
    (built,) = load_config(good).build_sources()
    assert isinstance(built, BucketSource)
    (problem,) = problems_of(
        write(tmp_path, "sources:\n  - kind: bucket\n    bucket: b\n    prefx: p\n", "b.yaml")
    ).problems
    assert problem.path == "sources[0].prefx" and "Did you mean 'prefix'?" in problem.message
    assert "Allowed keys: kind, bucket, bucket_kind, prefix, cache" in problem.message


def test_a_constructor_refusal_points_at_the_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# splitter\nsplitter:\n  max_tokens: 64\n  overlap: 40\n"))
    with pytest.raises(InvalidConfigError, match=r"app.yaml:2: splitter: overlap must be between 0 and"):
        config.build_splitter(HashingEmbedder())


def test_command_line_overrides(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config("server:\n  port: 9000\n")
    changed = config.with_overrides(host="0.0.0.0", state_dir="here")
    assert (changed.server.host, changed.server.port) == ("0.0.0.0", 9000)
    assert changed.persistence.state_dir == str(tmp_path / "here")
    with pytest.raises(ConfigError, match="port"):
        config.with_overrides(port=0)


# -- API keys and their secrets ------------------------------------------------------------------------

SECRET = "written-in-the-file-0123456789"
KEYS = """
server:
  api_keys:
    - name: support-bot
      key: {key}
      role: read
"""


def test_a_named_key_written_in_the_file_is_refused_naming_its_line_and_what_to_do(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, KEYS.format(key=SECRET))).problems
    assert (problem.line, problem.path) == (4, "server.api_keys[0].key")
    assert "'support-bot': the secret is written in the configuration file" in problem.message
    assert "key: ${SUPPORT_BOT_KEY} and set SUPPORT_BOT_KEY" in problem.message
    assert "key_file" in problem.message and "key_sha256" in problem.message
    assert SECRET not in str(problems_of(write(tmp_path, KEYS.format(key=SECRET))))


@pytest.mark.parametrize(
    "key",
    [
        "${UNSET_KEY:-" + SECRET + "}",  # the default stands in the file
        "${EMPTY_KEY:-" + SECRET + "}",
        "prefix-${SUPPORT_BOT_KEY}",  # part of it stands in the file
        "'" + SECRET + "'",
    ],
)
def test_a_secret_only_partly_from_the_environment_is_refused(tmp_path: Path, key: str) -> None:
    environ = {"SUPPORT_BOT_KEY": SECRET, "EMPTY_KEY": ""}
    (problem,) = problems_of(write(tmp_path, KEYS.format(key=key)), environ=environ).problems
    assert problem.path == "server.api_keys[0].key" and "written in the configuration file" in problem.message


@pytest.mark.parametrize("key", ["${SUPPORT_BOT_KEY}", '"${SUPPORT_BOT_KEY}"', "${SUPPORT_BOT_KEY:-}"])
def test_a_secret_from_the_environment_is_accepted(tmp_path: Path, key: str) -> None:
    config = load_config(write(tmp_path, KEYS.format(key=key)), environ={"SUPPORT_BOT_KEY": SECRET})
    (api_key,) = config.server.api_keys
    assert (api_key.name, api_key.key, api_key.role) == ("support-bot", SECRET, "read")


def test_the_legacy_api_key_written_in_the_file_still_works_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="ragflow.config"):
        config = load_config(write(tmp_path, f"server:\n  port: 8001\n  api_key: {SECRET}\n"))
    assert config.server.api_key == SECRET
    (warning,) = caplog.messages
    assert warning.startswith(f"{tmp_path / 'app.yaml'}:3: server.api_key: the API key is written in")
    assert "api_key: ${RAGFLOW_API_KEY}" in warning and SECRET not in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="ragflow.config"):
        from_env = load_config(
            write(tmp_path, "server:\n  api_key: ${RAGFLOW_API_KEY}\n"), environ={"RAGFLOW_API_KEY": SECRET}
        )
        unset = load_config(write(tmp_path, "server:\n  api_key: ${RAGFLOW_API_KEY:-}\n"), environ={})
    assert (from_env.server.api_key, unset.server.api_key, caplog.messages) == (SECRET, None, [])


def test_key_files_and_server_paths_are_relative_to_the_configuration_file(
    tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "conf" / "secrets").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(
        tmp_path / "conf",
        """
        server:
          api_keys:
            - name: ingest
              key_file: secrets/ingest
              role: write
            - name: ops
              key_file: /run/secrets/ops
              role: admin
          audit_log: logs/audit.jsonl
          tls_cert: tls/cert.pem
          tls_key: tls/key.pem
        """,
    )
    server = load_config(path).server
    conf = tmp_path / "conf"
    assert [key.key_file for key in server.api_keys] == [str(conf / "secrets/ingest"), "/run/secrets/ops"]
    assert (server.audit_log, server.tls_cert, server.tls_key) == (
        str(conf / "logs/audit.jsonl"),
        str(conf / "tls/cert.pem"),
        str(conf / "tls/key.pem"),
    )


def test_named_keys_from_python_may_hold_the_secret_but_are_written_out_as_its_sha256(
    tmp_path: Path,
) -> None:
    data = {"server": {"api_keys": [{"name": "bot", "key": SECRET, "role": "write"}]}}
    config = RagflowConfig.from_dict(data)  # not from a file: nothing is written anywhere
    assert config.server.api_keys[0].key == SECRET
    text = config.to_yaml()
    assert SECRET not in text
    (again,) = parse_config(text, base_dir=tmp_path).server.api_keys
    assert again.key_sha256 == hashlib.sha256(SECRET.encode()).hexdigest() and again.role == "write"


# -- round trip and building ---------------------------------------------------------------------------

FULL_EXAMPLE = """
sources:
  - kind: folder
    root: docs
    include: ["**/*.md", "**/*.pdf"]
    exclude: ["drafts"]
    name: handbook
    skip_hidden: true
    follow_symlinks: false
    max_file_size: 1000000
    poll_interval: null
    reconcile_interval: 30
    coalesce_window: 0.1
parser:
  kind: default
splitter:
  max_tokens: 96
  overlap: 8
  encoding: cl100k_base
embedder:
  kind: local
  batch_size: 4
  device: cpu
index:
  kind: faiss
  faiss_kind: hnsw
  hnsw_m: 16
  ef_search: 32
  block_size: 1024
llm:
  model: gpt-4o-mini
  base_url: https://api.openai.com/v1
  api_key: ${OPENAI_API_KEY}
  timeout: 20
  max_retries: 1
server:
  host: 0.0.0.0
  port: 8080
  api_key: secret
  max_k: 50
  max_request_bytes: 2000000
persistence:
  state_dir: state
  checkpoint_interval: 2.5
  on_incompatible_state: rebuild
  migration_gate:
    eval_set: eval/questions.jsonl
    tolerance: 0.01
"""


def test_a_full_example_round_trips(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_EXAMPLE), environ={"OPENAI_API_KEY": "sk-test"})
    again = parse_config(config.to_yaml(), base_dir=tmp_path / "elsewhere")
    assert again == config and again.to_dict() == config.to_dict()
    data = config.to_dict()
    assert data["sources"][0] == {
        "kind": "folder",
        "root": str(tmp_path / "docs"),
        "include": ["**/*.md", "**/*.pdf"],
        "exclude": ["drafts"],
        "name": "handbook",
        "skip_hidden": True,
        "follow_symlinks": False,
        "max_file_size": 1000000,
        "poll_interval": None,
        "reconcile_interval": 30.0,
        "coalesce_window": 0.1,
    }
    assert data["index"] == {
        "kind": "faiss",
        "faiss_kind": "hnsw",
        "hnsw_m": 16,
        "ef_search": 32,
        "block_size": 1024,
    }
    assert data["llm"]["api_key"] == "sk-test" and data["server"]["port"] == 8080
    assert data["persistence"] == {
        "state_dir": str(tmp_path / "state"),
        "checkpoint_interval": 2.5,
        "on_incompatible_state": "rebuild",
        "keep_previous_generation": 600.0,
        "migration_gate": {
            "eval_set": str(tmp_path / "eval" / "questions.jsonl"),
            "metric": "mrr@10",
            "tolerance": 0.01,
            "search_mode": None,
            "recheck_seconds": 60.0,
        },
    }


def test_a_config_builds_a_working_store(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rivers.md").write_text("# Rivers\n\nThe river carries stones to the sea.\n")
    (docs / "notes.txt").write_text("Not included: only Markdown is.\n")
    path = write(
        tmp_path,
        """
        sources:
          - kind: folder
            root: docs
            include: ["*.md"]
            reconcile_interval: null
        splitter:
          max_tokens: 32
        index:
          kind: faiss
          faiss_kind: hnsw
          block_size: 64
        """,
    )
    store = load_config(path).build_store(embedder=HashingEmbedder())
    assert getattr(store.splitter, "max_tokens", None) == 32
    assert getattr(store.index, "kind", None) == "hnsw"
    assert store.state_dir == tmp_path / ".ragflow"
    store.run_static()
    assert store.statistics()["file_count"] == 1
    (hit,) = store.retrieve("river stones", k=5)
    assert hit.metadata["path"].endswith("rivers.md")


def test_persistence_options_reach_the_store(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    text = "sources:\n  - kind: folder\n    root: docs\npersistence:\n  checkpoint_interval: 0.25\n"
    store = load_config(write(tmp_path, text)).build_store(embedder=HashingEmbedder())
    try:
        assert store._checkpointer is not None and store._checkpointer.interval == 0.25
    finally:
        store.stop()
    bad = write(tmp_path, text + "  on_incompatible_state: migrat\n")
    (problem,) = problems_of(bad).problems
    assert (problem.line, problem.path) == (6, "persistence.on_incompatible_state")
    assert "'migrate'" in problem.message and "'migrat'" in problem.message
    # 'migrate' is what serve does; a store built to index once refuses it, saying so
    migrating = load_config(write(tmp_path, text + "  on_incompatible_state: migrate\n"))
    with pytest.raises(ConfigError, match="ragflow serve"):
        migrating.build_store(embedder=HashingEmbedder())


def test_a_state_of_another_model_is_reported_as_such_not_as_a_source_problem(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    config = load_config(write(tmp_path, "sources:\n  - kind: folder\n    root: docs\n"))
    config.build_store(embedder=HashingEmbedder(dim=64)).run_static()
    with pytest.raises(IncompatibleStateError, match="embedding model 'test/hashing-64'") as caught:
        config.build_store(embedder=HashingEmbedder(dim=32))
    assert "sources" not in str(caught.value).split(":")[0]


def test_the_bundled_app_configurations_load_offline() -> None:
    for path in (REPO / "apps/qa_server/app.yaml", REPO / "docker/app.yaml"):
        config = load_config(path, environ={})
        assert [s.kind for s in config.sources] == ["folder"]
        assert config.llm_settings() is None  # no model named: extractive answers, no network
        assert config.server.port == RagflowConfig().server.port
    qa = load_config(REPO / "apps/qa_server/app.yaml", environ={})
    assert Path(qa.sources[0].options["root"]) == REPO / "apps/qa_server/sample_docs"
