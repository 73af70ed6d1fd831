"""The transport variables the deployment files set are the ones the services read.

The deployment files were written against the names of the TLS runtime (repo_facts lists
them). Once a service's settings read any of them, they must read all of them, so a name
that drifts on either side fails here instead of being silently ignored in a cluster.
"""

from __future__ import annotations

import pytest

from .repo_facts import (
    SERVICES,
    SHARED_TRANSPORT_VARIABLES,
    own_transport_variables,
    settings_class,
    settings_variables,
)

# Present before the TLS runtime, so it says nothing about whether the runtime is there.
PREDATES_TLS = "LISTEN_HOST"


def read_by(service: str) -> set[str]:
    return settings_variables(settings_class(service))


def runtime_reads_transport_variables() -> bool:
    return any(
        name in read_by(service)
        for service in SERVICES
        for name in own_transport_variables(service)
        if not name.endswith(PREDATES_TLS)
    )


pytestmark = pytest.mark.skipif(
    not runtime_reads_transport_variables(),
    reason="the services' settings read no TLS variable yet",
)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reads_every_transport_variable_of_its_own(service: str) -> None:
    assert own_transport_variables(service) - read_by(service) == set()


def test_some_service_reads_each_shared_transport_variable() -> None:
    read_by_any = set().union(*(read_by(service) for service in SERVICES))
    assert SHARED_TRANSPORT_VARIABLES - read_by_any == set()
