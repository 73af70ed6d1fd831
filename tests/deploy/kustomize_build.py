"""Renders the Kubernetes manifests with kustomize: every combination of base and components."""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

import yaml

from .repo_facts import REPO_ROOT

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES_DIR / "base"
COMPONENTS = sorted(path.name for path in (KUBERNETES_DIR / "components").iterdir())
OVERLAYS = sorted(path.name for path in (KUBERNETES_DIR / "overlays").iterdir())


def kustomize_command() -> list[str] | None:
    """The standalone kustomize, or the one built into kubectl; None when neither exists."""
    if standalone := shutil.which("kustomize"):
        return [standalone, "build"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    return None


def component_sets() -> list[tuple[str, ...]]:
    return [
        combination
        for size in range(len(COMPONENTS) + 1)
        for combination in itertools.combinations(COMPONENTS, size)
    ]


def render(directory: pathlib.Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    assert command is not None
    result = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def render_with_components(components: tuple[str, ...]) -> list[dict[str, Any]]:
    """The base with `components`, through a throwaway kustomization that names them."""
    with tempfile.TemporaryDirectory() as workdir:
        # kustomize refuses absolute paths to other kustomizations; relative ones work.
        def relative(path: pathlib.Path) -> str:
            return os.path.relpath(path, workdir)

        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative(BASE)],
            "components": [relative(KUBERNETES_DIR / "components" / c) for c in components],
        }
        (pathlib.Path(workdir) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return render(pathlib.Path(workdir))
