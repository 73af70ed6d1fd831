"""Policy errors name the field; settings read service and shared variables."""

from __future__ import annotations

import pathlib

import pydantic
import pytest
from pydantic_settings import SettingsConfigDict

from llmmesh.policy import (
    PolicyError,
    StrictModel,
    Tenant,
    hash_api_key,
    parse_section,
    read_policy_document,
)
from llmmesh.runtime.channels import dns_target
from llmmesh.runtime.settings import ServiceSettings, shared


class TenantsOnly(StrictModel):
    tenants: list[Tenant]


def test_embedded_default_policy_has_the_development_tenant() -> None:
    policy = parse_section(read_policy_document(None), TenantsOnly, "tenants")
    assert policy.tenants[0].api_keys_sha256 == [hash_api_key("llmmesh-dev-key")]


def test_bad_field_is_named_with_its_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("tenants:\n  - name: a\n  - name: b\n    api_keys_sha256: [nothex]\n")
    with pytest.raises(PolicyError, match=r"tenants\[1\]\.api_keys_sha256"):
        parse_section(read_policy_document(path), TenantsOnly, "tenants")


def test_unknown_field_is_rejected(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("tenants:\n  - name: a\n    teir: gold\n")
    with pytest.raises(PolicyError, match=r"tenants\[0\]\.teir: Extra inputs"):
        parse_section(read_policy_document(path), TenantsOnly, "tenants")


@pytest.mark.parametrize(
    ("text", "message"),
    [("tenants: [", "not valid YAML"), ("- a\n- b\n", "mapping of sections")],
)
def test_unreadable_documents_fail_clearly(tmp_path: pathlib.Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        read_policy_document(path)


def test_missing_policy_file_fails_clearly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        read_policy_document(tmp_path / "absent.yaml")


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMMESH_EXAMPLE_", extra="ignore", frozen=True)
    redis_url: str = pydantic.Field(default="", validation_alias=shared("REDIS_URL"))


def test_settings_read_prefixed_and_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMESH_EXAMPLE_PORT", "7001")
    monkeypatch.setenv("LLMMESH_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("LLMMESH_POLICY_FILE", "/etc/llmmesh/policy.yaml")
    settings = ExampleSettings()
    assert settings.port == 7001
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.policy_file == "/etc/llmmesh/policy.yaml"


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMESH_EXAMPLE_PORT", "70000")
    with pytest.raises(pydantic.ValidationError, match="port"):
        ExampleSettings()


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("ratelimiter:50052", "dns:///ratelimiter:50052"),
        ("dns:///cache:50053", "dns:///cache:50053"),
        ("unix:/tmp/provider.sock", "unix:/tmp/provider.sock"),
        ("ipv4:127.0.0.1:50054,127.0.0.1:50064", "ipv4:127.0.0.1:50054,127.0.0.1:50064"),
    ],
)
def test_peer_addresses_resolve_through_dns_for_round_robin(address: str, target: str) -> None:
    assert dns_target(address) == target
