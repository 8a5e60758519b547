"""The deployment files (Dockerfile, docker-compose.yml, .env.example, .dockerignore) name only
commands the CLI really has and settings that really exist. No Docker engine is needed: the
files are parsed, and every `ridgeline ...` command in them is run with `--help`."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

DATABASE_URL = "postgresql+psycopg://ridgeline:ridgeline@postgres:5432/ridgeline"
RIDGELINE_SERVICES = ("migrate", "api", "worker")
# The optional `spark` profile: a Spark master and worker (apache/spark) and Spark-capable workers.
SPARK_SERVICES = ("spark-master", "spark-worker", "worker-spark")
SERVE_CMD = ["ridgeline", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
# Settings that are deliberately not in .env.example: `serve` takes the bind address from
# its --host/--port options, and worker_plugins is for tests and benchmarks.
NOT_IN_ENV_EXAMPLE = {"host", "port", "worker_plugins"}
# Values in .env.example that differ from the Settings default on purpose.
ENV_EXAMPLE_OVERRIDES = {"data_dir": Path("/data")}

Command = tuple[str, ...]


# --- parsing helpers -------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def command_words(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(w) for w in value]


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, inside a continuation too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """A CMD/ENTRYPOINT/HEALTHCHECK ... CMD argument in exec (JSON) form, or shell words."""
    if args.startswith("["):
        words = json.loads(args)
        assert all(isinstance(w, str) for w in words), args
        return words
    return shlex.split(args)


def dockerfile_cmd() -> list[str]:
    cmds = [args for keyword, args in dockerfile_stages()[-1] if keyword == "CMD"]
    assert cmds, "the final Dockerfile stage has no CMD"
    return exec_form(cmds[-1])


def env_example() -> tuple[dict[str, str], set[str]]:
    """(active NAME=value lines, every RIDGELINE_* name mentioned, commented out or not)."""
    text = ENV_EXAMPLE.read_text()
    active: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not a NAME=value line: {raw!r}"
        assert name.strip() not in active, f".env.example sets {name} twice"
        active[name.strip()] = value.strip()
    mentioned = set(re.findall(r"\bRIDGELINE_[A-Z0-9_]+", text))
    return active, mentioned


def env_name(field: str) -> str:
    return f"RIDGELINE_{field.upper()}"


# --- `ridgeline ... --help` for every command the files name --------------------------------


def documented_commands(text: str) -> list[Command]:
    """`ridgeline ...` commands quoted in backticks or shown after `docker compose run`."""
    found = re.findall(r"`(ridgeline [^`]+)`", text)
    found += re.findall(r"docker compose run\b[^\n`]*?\b(ridgeline [^\n`#]+)", text)
    return [tuple(shlex.split(cmd)) for cmd in found]


@cache
def all_commands() -> dict[str, list[Command]]:
    """Where each command comes from -> the commands, each starting with `ridgeline`."""
    sources: dict[str, list[Command]] = {}
    for name, svc in compose()["services"].items():
        if "command" in svc and command_words(svc["command"])[0] == "ridgeline":
            sources[f"compose:{name}"] = [tuple(command_words(svc["command"]))]
    docker_cmds: list[Command] = []
    for keyword, args in dockerfile_instructions():
        if keyword in {"CMD", "ENTRYPOINT"}:
            words = exec_form(args)
            if words and words[0] == "ridgeline":
                docker_cmds.append(tuple(words))
        elif keyword == "RUN":
            docker_cmds += [
                tuple(shlex.split(m)) for m in re.findall(r"\b(ridgeline [^&|;]+)", args)
            ]
    sources["Dockerfile"] = docker_cmds
    for path in (COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE):
        sources[f"docs:{path.name}"] = documented_commands(path.read_text())
    return sources


def run_help(cmd: Command) -> subprocess.CompletedProcess[str]:
    """`python -m service.cli <args> --help`: exit 0 proves the command and its options exist
    (Click rejects an unknown command or option before it prints help)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDGELINE_")}
    env.update(NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *cmd[1:], "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def help_results() -> dict[Command, subprocess.CompletedProcess[str]]:
    unique = sorted({cmd for cmds in all_commands().values() for cmd in cmds})
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(unique, pool.map(run_help, unique), strict=True))


def assert_real_commands(
    source: str, results: dict[Command, subprocess.CompletedProcess[str]]
) -> None:
    for cmd in all_commands()[source]:
        assert cmd[0] == "ridgeline", f"{source}: {shlex.join(cmd)} is not a ridgeline command"
        result = results[cmd]
        assert result.returncode == 0, (
            f"{source}: `{shlex.join(cmd)}` is not a command the CLI has:\n"
            f"{result.stdout}{result.stderr}"
        )


def test_console_script_is_service_cli() -> None:
    """`ridgeline` is service.cli:app, so `python -m service.cli` checks the same program."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["ridgeline"] == "service.cli:app"


@pytest.mark.parametrize("name", RIDGELINE_SERVICES)
def test_compose_commands_are_real(name: str, help_results: dict) -> None:
    assert "command" in service(name), f"compose service {name} has no command"
    assert_real_commands(f"compose:{name}", help_results)


def test_dockerfile_commands_are_real(help_results: dict) -> None:
    assert all_commands()["Dockerfile"], "the Dockerfile runs no ridgeline command"
    assert_real_commands("Dockerfile", help_results)


@pytest.mark.parametrize("path", [COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE], ids=lambda p: p.name)
def test_documented_commands_are_real(path: Path, help_results: dict) -> None:
    assert_real_commands(f"docs:{path.name}", help_results)


def test_the_first_key_recipe_is_documented() -> None:
    assert ("ridgeline", "keys", "create", "--name", "admin") in all_commands()[
        "docs:docker-compose.yml"
    ]
    assert "docker compose run --rm api ridgeline keys create --name admin" in (
        COMPOSE_FILE.read_text()
    )


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_services_and_commands() -> None:
    assert "version" not in compose(), "the compose spec has no `version:` key"
    assert set(compose()["services"]) == {"postgres", *RIDGELINE_SERVICES, *SPARK_SERVICES}
    assert service("postgres")["image"].startswith("postgres:16")
    assert command_words(service("migrate")["command"]) == ["ridgeline", "migrate"]
    assert command_words(service("api")["command"]) == SERVE_CMD
    assert command_words(service("worker")["command"]) == ["ridgeline", "worker"]
    assert "8000:8000" in [str(p) for p in service("api").get("ports", [])]


def test_compose_startup_order() -> None:
    postgres = service("postgres")
    assert "pg_isready" in " ".join(command_words(postgres["healthcheck"]["test"]))
    volumes = [str(v).split(":")[0] for v in postgres.get("volumes", [])]
    assert any(v in (compose().get("volumes") or {}) for v in volumes), (
        "postgres keeps its data in a named volume"
    )

    migrate = service("migrate")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert str(migrate.get("restart")) == "no", "a one-shot migration must not restart"
    for name in ("api", "worker"):
        depends = service(name)["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_spark_profile() -> None:
    """Spark master and worker from the official image, and workers built with Java and pyspark,
    all sharing the blob volume that RIDGELINE_BLOB_STORE=file:///blobs names; only on request."""
    for name in SPARK_SERVICES:
        assert service(name)["profiles"] == ["spark"], name
        assert "blobs:/blobs" in service(name)["volumes"], name
    for name in ("spark-master", "spark-worker"):
        assert service(name)["image"].startswith("apache/spark:"), name
    master = command_words(service("spark-master")["command"])
    assert master[-1] == "org.apache.spark.deploy.master.Master"
    assert command_words(service("spark-worker")["command"])[-1] == "spark://spark-master:7077"
    worker = service("worker-spark")
    assert worker["build"]["target"] == "worker-spark"
    assert command_words(worker["command"]) == ["ridgeline", "worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    stages = {stage[0][1].split()[-1]: stage for stage in dockerfile_stages()}
    assert "worker-spark" in stages and stages["worker-spark"] is not dockerfile_stages()[-1]
    spark_runs = " ".join(arg for kw, arg in stages["worker-spark"] if kw == "RUN")
    assert "openjdk-17-jre-headless" in spark_runs
    build_runs = " ".join(arg for kw, arg in stages["build-spark"] if kw == "RUN")
    assert "['spark']" in build_runs and "-c constraints.txt" in build_runs


def test_worker_is_scalable() -> None:
    worker = service("worker")
    assert "container_name" not in worker, "a fixed container_name blocks --scale worker=N"
    assert "ports" not in worker, "published ports block --scale worker=N"
    assert worker.get("healthcheck", {}).get("disable") is True, (
        "a worker serves no HTTP; the image's /healthz check would mark it unhealthy"
    )


@pytest.mark.parametrize("name", RIDGELINE_SERVICES)
def test_ridgeline_services_use_postgres(name: str) -> None:
    svc = service(name)
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    assert env.get("RIDGELINE_DATABASE_URL") == DATABASE_URL
    env_files = svc.get("env_file")
    env_files = env_files if isinstance(env_files, list) else [env_files]
    paths = [f["path"] if isinstance(f, dict) else f for f in env_files]
    assert ".env" in paths
    assert Settings(database_url=DATABASE_URL).is_sqlite is False


def test_binding_all_interfaces_requires_auth() -> None:
    """What the Dockerfile and compose comments promise about `--host 0.0.0.0`."""
    assert Settings(host="0.0.0.0").auth == "required"
    with pytest.raises(ValueError, match="loopback"):
        Settings(host="0.0.0.0", auth="disabled")


def test_compose_structure() -> None:
    """A structural check that needs no schema: top-level keys, conditions, named volumes."""
    data = compose()
    allowed_top = {"name", "services", "networks", "volumes", "secrets", "configs", "include"}
    for key in data:
        assert key in allowed_top or key.startswith("x-"), f"unknown top-level key {key!r}"
    declared_volumes = set(data.get("volumes") or {})
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in data["services"].items():
        assert "image" in svc or "build" in svc, name
        if "command" in svc:
            assert isinstance(svc["command"], list | str), name
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in data["services"], f"{name} depends on unknown service {dep}"
            assert spec["condition"] in conditions, f"{name}: {spec['condition']}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in data["services"][dep], f"{dep} has no healthcheck"
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name}: volume {source!r} is not declared"
        for port in svc.get("ports") or []:
            assert isinstance(port, str), f"{name}: quote ports ({port!r}) so YAML keeps them"


def test_compose_matches_the_compose_spec_schema() -> None:
    """The Compose Specification JSON schema, as vendored (offline) by check-jsonschema."""
    pytest.importorskip("check_jsonschema")
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_stages() -> None:
    instructions = dockerfile_instructions()
    args = {}
    for keyword, arg in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in arg:
            name, value = arg.split("=", 1)
            args[name] = value
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a multi-stage build: build tools stay out of the final image"
    named: set[str] = set()
    for stage in stages:
        words = stage[0][1].split()
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        # A stage starts from the slim base or from an earlier stage (build-spark from build).
        assert base == "python:3.11-slim" or base in named, base
        if len(words) == 3 and words[1].upper() == "AS":
            named.add(words[2])

    build = " ".join(arg for kw, arg in stages[0] if kw == "RUN")
    assert "/opt/venv" in build
    torch_at = build.find("torch==")
    project_at = build.find("-e .")
    assert 0 <= torch_at < project_at, "torch (CPU build) is installed before the project"
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE.read_text()
    torch_arg = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    torch_pin = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert torch_arg and torch_pin, "torch is pinned in the Dockerfile and constraints.txt"
    assert torch_arg.group(1) == torch_pin.group(1), "Dockerfile and constraints.txt pin torch"
    assert "-c constraints.txt" in build

    final = stages[-1]
    copies = [arg for kw, arg in final if kw == "COPY"]
    assert any("/opt/venv" in c and "--from=" in c for c in copies), "final stage copies venv"
    assert any(c.endswith(" /app") and "--from=" in c for c in copies), "final stage has /app"
    final_text = " ".join(arg for _, arg in final)
    for tool in ("gcc", "build-essential", "g++", "make "):
        assert tool not in final_text, f"{tool} in the final stage"


def test_dockerfile_runtime_contract() -> None:
    final = dockerfile_stages()[-1]
    users = [arg for kw, arg in final if kw == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, "the container must not run as root"
    assert user in {"10001", "ridgeline"}

    env_text = " ".join(arg for kw, arg in final if kw == "ENV")
    assert re.search(r"\bRIDGELINE_DATA_DIR=/data\b", env_text)
    assert any(kw == "VOLUME" and "/data" in arg for kw, arg in final)
    assert any(kw == "EXPOSE" and arg.split()[0] == "8000" for kw, arg in final)

    healthchecks = [arg for kw, arg in final if kw == "HEALTHCHECK"]
    assert healthchecks, "the final stage has a HEALTHCHECK"
    probe = healthchecks[-1].split(" CMD ", 1)[1]
    words = exec_form(probe)
    assert words[0] in {"python", "python3", "/opt/venv/bin/python"}
    assert "http://127.0.0.1:8000/healthz" in " ".join(words)

    assert dockerfile_cmd() == SERVE_CMD


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    for keyword, args in dockerfile_stages()[0]:
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            if source == ".":
                continue
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore() -> None:
    for kept in (
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "service/cli.py",
        "migrations/env.py",
        "migrations/versions/0001_x.py",
    ):
        assert not dockerignored(kept), f"{kept} must reach the build"
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/ridgeline.db",
        ".env",
        "service/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v",
        "ridgeline.egg-info/PKG-INFO",
    ):
        assert dockerignored(dropped), f"{dropped} must stay out of the build context"


# --- .env.example ----------------------------------------------------------------------------


def test_env_example_names_real_settings() -> None:
    fields = {env_name(f): f for f in Settings.model_fields}
    active, mentioned = env_example()
    unknown = sorted(mentioned - set(fields))
    assert not unknown, f".env.example names settings that do not exist: {unknown}"
    missing = sorted(
        env_name(f)
        for f in Settings.model_fields
        if f not in NOT_IN_ENV_EXAMPLE and env_name(f) not in mentioned
    )
    assert not missing, f"document these settings in .env.example: {missing}"
    assert not ({env_name(f) for f in NOT_IN_ENV_EXAMPLE} & set(active))


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RIDGELINE_"):
            monkeypatch.delenv(key)
    active, _ = env_example()
    for name, value in active.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the example must validate as a whole
    by_env = {env_name(f): f for f in Settings.model_fields}
    for name in active:
        field = by_env[name]
        expected = ENV_EXAMPLE_OVERRIDES.get(
            field, Settings.model_fields[field].get_default(call_default_factory=True)
        )
        assert getattr(settings, field) == expected, f"{name}={active[name]} is not {expected!r}"
    # The one deliberate difference is what the image sets.
    assert active["RIDGELINE_DATA_DIR"] == "/data"
