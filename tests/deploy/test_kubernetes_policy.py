"""The policy in the manifests: one hashed ConfigMap every service mounts, valid for each of
them, and upstream keys only as files of a Secret."""

from __future__ import annotations

import posixpath
import re
from typing import Any

import pytest
import yaml

from llmmesh.policy import hash_api_key
from llmmesh_cache.policy import CachePolicy
from llmmesh_provider.config import parse_provider_policy
from llmmesh_ratelimiter.rate_policy import load_rate_policy
from llmmesh_router.policy import load_router_policy

from .manifests import (
    COMBINATIONS,
    Manifests,
    container,
    environment,
    find,
    of_kind,
    pod_spec,
    rendered,
    requires_kustomize,
    volume_holding,
)
from .repo_facts import SERVICES

pytestmark = requires_kustomize

POLICY_CONFIGMAP = "llmmesh-policy"
# kustomize appends a hash of the content: a new policy is a new name, so the pod templates
# that name it change and the Deployments roll.
HASHED_NAME = re.compile(rf"{POLICY_CONFIGMAP}-[a-z0-9]{{10}}")
# The public key of the embedded default policy; no deployment for others may accept it.
PUBLIC_DEV_KEY = "llmmesh-dev-key"
PROVIDER_KEYS_SECRET = "provider-keys"
UPSTREAM_KEY_VARIABLES = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}


def policy_of(manifests: Manifests, service: str) -> tuple[str, dict[str, Any]]:
    """The ConfigMap the service's LLMMESH_POLICY_FILE is on, and the policy document."""
    deployment = find(manifests, "Deployment", service)
    path = environment(manifests, deployment)["LLMMESH_POLICY_FILE"]
    volume, _ = volume_holding(deployment, path)
    name = volume["configMap"]["name"]
    text = find(manifests, "ConfigMap", name)["data"][posixpath.basename(path)]
    document: dict[str, Any] = yaml.safe_load(text)
    return name, document


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_service_reads_one_hashed_policy_config_map(combination: str) -> None:
    manifests = rendered(combination)
    names = {policy_of(manifests, service)[0] for service in SERVICES}
    assert len(names) == 1
    assert HASHED_NAME.fullmatch(names.pop())
    assert (
        len(
            [
                m
                for m in of_kind(manifests, "ConfigMap")
                if HASHED_NAME.fullmatch(m["metadata"]["name"])
            ]
        )
        == 1
    )


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_the_policy_is_valid_for_every_service(combination: str) -> None:
    _, document = policy_of(rendered(combination), "router")
    router = load_router_policy(document)
    load_rate_policy(document)
    CachePolicy.from_document(document)
    providers = parse_provider_policy(document).providers
    instances = {instance.name for instance in providers.instances}
    for model in router.models:
        assert model.provider in instances, f"model {model.name}: no instance {model.provider}"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_upstream_keys_come_only_from_files_of_the_provider_keys_secret(combination: str) -> None:
    manifests = rendered(combination)
    provider = find(manifests, "Deployment", "provider")
    _, document = policy_of(manifests, "provider")
    for instance in parse_provider_policy(document).providers.instances:
        key_file = getattr(instance, "api_key_file", "")
        if key_file:
            volume, _ = volume_holding(provider, key_file)
            assert volume["secret"]["secretName"] == PROVIDER_KEYS_SECRET
    (keys,) = [
        volume
        for volume in pod_spec(provider)["volumes"]
        if volume.get("secret", {}).get("secretName") == PROVIDER_KEYS_SECRET
    ]
    assert keys["name"] in {mount["name"] for mount in container(provider)["volumeMounts"]}
    assert keys["secret"]["defaultMode"] & 0o007 == 0
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        assert not UPSTREAM_KEY_VARIABLES & set(env), f"{service}: a key in the environment"


def test_production_keys_every_upstream_from_a_file() -> None:
    _, document = policy_of(rendered("overlays/production"), "provider")
    keyed = [
        instance
        for instance in parse_provider_policy(document).providers.instances
        if instance.backend in ("openai", "anthropic")
    ]
    assert keyed
    assert all(instance.api_key_file for instance in keyed)


def test_production_does_not_accept_the_public_development_key() -> None:
    _, document = policy_of(rendered("overlays/production"), "router")
    digests = {d for tenant in load_router_policy(document).tenants for d in tenant.api_keys_sha256}
    assert hash_api_key(PUBLIC_DEV_KEY) not in digests
