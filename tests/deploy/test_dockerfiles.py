"""The service Dockerfiles: multi-stage, unprivileged, and consistent with the packages."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from .dockerignore import is_ignored, read_rules
from .repo_facts import (
    REPO_ROOT,
    SERVICES,
    console_scripts,
    default_health_port,
    default_port,
    service_variables,
)

RUNTIME_BASE_IMAGE = "python:3.11-slim"
VENV = "/opt/venv"
HEALTH_CHECK_SCRIPT = "deploy/docker/grpc_health_check.py"

Instruction = dict[str, Any]


def dockerfile_path(service: str) -> pathlib.Path:
    return REPO_ROOT / "services" / service / "Dockerfile"


def parse(service: str) -> DockerfileParser:
    return DockerfileParser(path=str(dockerfile_path(service)))


def stages(service: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage, each group opening with its FROM."""
    grouped: list[list[Instruction]] = []
    for instruction in parse(service).structure:
        if instruction["instruction"] == "FROM":
            grouped.append([])
        if grouped and instruction["instruction"] != "COMMENT":
            grouped[-1].append(instruction)
    return grouped


def final_stage(service: str) -> list[Instruction]:
    return stages(service)[-1]


def values(instructions: list[Instruction], name: str) -> list[str]:
    return [str(i["value"]) for i in instructions if i["instruction"] == name]


def copy_sources(value: str) -> tuple[list[str], bool]:
    """COPY's source paths, and whether they come from another stage."""
    words = shlex.split(value)
    from_stage = any(word.startswith("--from=") for word in words)
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1], from_stage


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_built_in_stages_on_python_slim(service: str) -> None:
    parser = parse(service)
    assert parser.is_multistage
    assert parser.parent_images == [RUNTIME_BASE_IMAGE] * len(parser.parent_images)


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_as_an_unprivileged_numeric_user(service: str) -> None:
    users = values(final_stage(service), "USER")
    assert users, "the final stage never leaves root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid == "" or int(gid) > 0


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_the_console_script_the_service_declares(service: str) -> None:
    entrypoints = values(final_stage(service), "ENTRYPOINT")
    assert len(entrypoints) == 1
    command = json.loads(entrypoints[0])  # exec form: SIGTERM reaches the service itself
    assert command == [f"llmmesh-{service}"]
    assert command[0] in console_scripts(service)
    assert console_scripts(service)[command[0]].startswith(f"llmmesh_{service}.")


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_ports_are_the_settings_defaults_for_service_and_health(service: str) -> None:
    exposed = values(final_stage(service), "EXPOSE")
    assert exposed == [f"{default_port(service)} {default_health_port(service)}"]


@pytest.mark.parametrize("service", SERVICES)
def test_health_check_probes_the_plain_text_health_port(service: str) -> None:
    # The service port may require client certificates; the health port never does.
    checks = values(final_stage(service), "HEALTHCHECK")
    assert len(checks) == 1
    probed = re.search(r"\$\{(?P<variable>\w+):-(?P<port>\d+)\}", checks[0])
    assert probed is not None, checks[0]
    assert probed["variable"] == f"LLMMESH_{service.upper()}_HEALTH_PORT"
    assert probed["variable"] in service_variables(service)
    assert int(probed["port"]) == default_health_port(service)
    # The image turns the health listener on at that port, which the service leaves off.
    assert f"{probed['variable']}={probed['port']}" in values(final_stage(service), "ENV")
    assert HEALTH_CHECK_SCRIPT.rsplit("/", 1)[-1] in checks[0]


@pytest.mark.parametrize("service", SERVICES)
def test_copied_sources_exist_in_the_build_context(service: str) -> None:
    rules = read_rules(REPO_ROOT / ".dockerignore")
    copied = []
    every_stage = [instruction for stage in stages(service) for instruction in stage]
    for value in values(every_stage, "COPY"):
        sources, from_stage = copy_sources(value)
        if not from_stage:
            copied.extend(sources)
    assert copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not is_ignored(source.rstrip("/"), rules), f"COPY {source}: in .dockerignore"


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_takes_only_the_venv_and_the_health_check(service: str) -> None:
    stage = final_stage(service)
    copies = [copy_sources(value) for value in values(stage, "COPY")]
    assert sorted(copies) == sorted([([VENV], True), ([HEALTH_CHECK_SCRIPT], False)])
    for command in values(stage, "RUN"):
        assert not re.search(r"\b(apt-get|apk|pip)\b", command), f"installs in the image: {command}"


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_libs_then_the_service_with_the_constraints(service: str) -> None:
    installs = [
        command for command in values(stages(service)[0], "RUN") if "pip install" in command
    ]
    targets = [shlex.split(command)[-1] for command in installs]
    assert targets == ["./libs", f"./services/{service}"]
    for command in installs:
        assert "--constraint constraints.txt" in command
    # No extras: the provider's local-embeddings extra would pull PyTorch into the image.
    assert not any("[" in target for target in targets)


def normalized(service: str) -> str:
    text = dockerfile_path(service).read_text()
    for specific, generic in [
        (f"services/{service}", "services/SERVICE"),
        (f"llmmesh-{service}", "llmmesh-SERVICE"),
        (f"llmmesh/{service}", "llmmesh/SERVICE"),
        (f"LLMMESH_{service.upper()}_", "LLMMESH_SERVICE_"),
        (str(default_health_port(service)), "HEALTH_PORT"),
        (str(default_port(service)), "PORT"),
    ]:
        text = text.replace(specific, generic)
    return text


def test_service_dockerfiles_differ_only_in_service_name_and_port() -> None:
    first, *others = SERVICES
    for service in others:
        assert normalized(service) == normalized(first), f"{service} drifted from {first}"


def build_inputs() -> list[str]:
    """Files the image builds read: package metadata and every source file."""
    roots = [REPO_ROOT / "libs", *(REPO_ROOT / "services" / s for s in SERVICES)]
    paths = [root / "pyproject.toml" for root in roots]
    for root in roots:
        paths.extend(
            path
            for path in (root / "src").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )
    paths.append(REPO_ROOT / HEALTH_CHECK_SCRIPT)
    return [path.relative_to(REPO_ROOT).as_posix() for path in paths]


def test_build_context_keeps_every_build_input() -> None:
    rules = read_rules(REPO_ROOT / ".dockerignore")
    left_out = [path for path in build_inputs() if is_ignored(path, rules)]
    assert left_out == []


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", "tests/deploy/x.py", "services/cache/tests/t.py",
     "bench/cache/run.py", "libs/src/llmmesh/__pycache__/x.pyc", "deploy/kubernetes/base/a.yaml",
     "docker-compose.yml", ".env"],
)  # fmt: skip
def test_build_context_leaves_out_what_no_image_needs(path: str) -> None:
    assert is_ignored(path, read_rules(REPO_ROOT / ".dockerignore"))
