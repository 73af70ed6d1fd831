"""The rendered Kubernetes manifests of every combination, and lookups the tests share."""

from __future__ import annotations

import functools
import pathlib
import posixpath
from typing import Any

import pytest
import yaml

from .kustomize_build import (
    KUBERNETES_DIR,
    OVERLAYS,
    component_sets,
    kustomize_command,
    render,
    render_with_components,
)

requires_kustomize = pytest.mark.skipif(
    kustomize_command() is None, reason="neither kustomize nor kubectl is installed"
)

Manifest = dict[str, Any]
Manifests = tuple[Manifest, ...]

COMBINATIONS = [f"base+{'+'.join(c)}" if c else "base" for c in component_sets()] + [
    f"overlays/{name}" for name in OVERLAYS
]


def components_of(combination: str) -> set[str]:
    """The components a combination turns on (an overlay names them in its kustomization)."""
    if combination.startswith("overlays/"):
        kustomization = yaml.safe_load(
            (KUBERNETES_DIR / combination / "kustomization.yaml").read_text()
        )
        return {pathlib.PurePosixPath(c).name for c in kustomization.get("components", [])}
    return set(combination.split("+")[1:])


def with_component(component: str) -> list[str]:
    return [c for c in COMBINATIONS if component in components_of(c)]


@functools.cache
def rendered(combination: str) -> Manifests:
    if combination.startswith("overlays/"):
        return tuple(render(KUBERNETES_DIR / combination))
    components = tuple(combination.split("+")[1:])
    return tuple(render_with_components(components))


def find(manifests: Manifests, kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def of_kind(manifests: Manifests, kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    return containers[0]


def environment(manifests: Manifests, deployment: Manifest) -> dict[str, str]:
    """What the container sees: its ConfigMaps (envFrom), then its own `env` on top."""
    values: dict[str, str] = {}
    for source in container(deployment).get("envFrom", []):
        values.update(find(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    values.update({item["name"]: item["value"] for item in container(deployment).get("env", [])})
    return values


def service_port(manifests: Manifests, host: str) -> tuple[Manifest, set[int]]:
    service = find(manifests, "Service", host)
    return service, {port["port"] for port in service["spec"]["ports"]}


def volume_holding(deployment: Manifest, path: str) -> tuple[Manifest, Manifest]:
    """The volume whose mount holds the file `path`, and that mount."""
    directory = posixpath.dirname(path)
    mounts = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{path}: {len(mounts)} mounts at {directory}"
    volumes = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mounts[0]["name"]]
    assert len(volumes) == 1
    return volumes[0], mounts[0]
