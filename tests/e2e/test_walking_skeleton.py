"""The four services as separate processes, driven only through the generated stubs."""

from __future__ import annotations

import importlib.resources
import pathlib
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import SERVICES, Mesh
from llmmesh.policy import DEFAULT_POLICY
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh

USER = chat_pb2.ROLE_USER


def _request(prompt: str, **fields: object) -> router_service_pb2.StreamCompleteRequest:
    request_fields: dict[str, object] = {"model": "auto", **fields}
    return router_service_pb2.StreamCompleteRequest(
        messages=[chat_pb2.ChatMessage(role=USER, content=prompt)],
        **request_fields,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    log_path = tmp_path_factory.mktemp("mesh") / "services.log"
    with local_mesh(log_path) as running:
        yield running


@pytest.fixture
def router(mesh: Mesh) -> Iterator[router_service_pb2_grpc.RouterServiceStub]:
    with grpc.insecure_channel(mesh.router_address) as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def test_answer_streams_through_all_four_services(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    events = list(
        router.StreamComplete(
            _request("Stream me an answer, please."), metadata=AUTH_METADATA, timeout=10
        )
    )
    deltas = [e.delta.text for e in events if e.HasField("delta")]
    summary = events[-1].summary
    assert len(deltas) > 1
    assert "".join(deltas).strip()
    assert events[-1].HasField("summary")
    assert summary.model in ("sim-fast", "sim-large")
    assert summary.provider == "simulated"
    assert summary.usage.output_tokens > 0
    assert summary.usage.input_tokens > 0
    assert summary.finish_reason != chat_pb2.FINISH_REASON_UNSPECIFIED
    assert summary.request_id


def test_unary_complete_returns_the_same_answer_as_the_stream(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    prompt = "Same prompt, two shapes."
    bypass = {"cache": {"mode": caching_pb2.CACHE_MODE_BYPASS}}
    streamed = "".join(
        e.delta.text
        for e in router.StreamComplete(_request(prompt, **bypass), metadata=AUTH_METADATA)
        if e.HasField("delta")
    )
    unary = router.Complete(
        router_service_pb2.CompleteRequest(
            model="auto",
            messages=[chat_pb2.ChatMessage(role=USER, content=prompt)],
            cache={"mode": caching_pb2.CACHE_MODE_BYPASS},
        ),
        metadata=AUTH_METADATA,
    )
    assert unary.text == streamed
    assert unary.summary.usage.output_tokens > 0


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_reports_serving_on_its_plain_text_health_port(
    mesh: Mesh, service: str
) -> None:
    with grpc.insecure_channel(mesh.processes[service].health_address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [((), "API_KEY_MISSING"), ((("authorization", "Bearer wrong-key"),), "API_KEY_INVALID")],
)
def test_call_without_a_valid_key_is_unauthenticated(
    router: router_service_pb2_grpc.RouterServiceStub,
    metadata: tuple[tuple[str, str], ...],
    reason: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(router.StreamComplete(_request("hello"), metadata=metadata, timeout=5))
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == reason


OVERSIZED = "x" * 1_100_000


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (router_service_pb2.StreamCompleteRequest(model="auto"), "messages"),
        (router_service_pb2.StreamCompleteRequest(
            model="auto", messages=[chat_pb2.ChatMessage(role=17, content="hi")]),  # type: ignore[arg-type]
         "messages[0].role"),
        (_request("hi", parameters=chat_pb2.GenerationParameters(max_tokens=-3)),
         "parameters.max_tokens"),
        (_request(OVERSIZED), "messages"),
        (_request("hi", model="no-such-model"), "model"),
    ],
    ids=["empty-messages", "unknown-role", "negative-max-tokens", "oversized-prompt",
         "unknown-model"],
)  # fmt: skip
def test_malformed_request_is_invalid_argument_and_the_router_stays_up(
    router: router_service_pb2_grpc.RouterServiceStub,
    request_message: router_service_pb2.StreamCompleteRequest,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(router.StreamComplete(request_message, metadata=AUTH_METADATA, timeout=5))
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in details.field_violations]
    still_answers = list(router.StreamComplete(_request("hi"), metadata=AUTH_METADATA, timeout=5))
    assert still_answers[-1].HasField("summary")


def test_sigterm_during_a_stream_lets_it_finish_and_every_service_exits_0(
    tmp_path: pathlib.Path,
) -> None:
    # A slow simulated provider keeps the stream in flight while the mesh is told to stop.
    policy = yaml.safe_load(
        importlib.resources.files("llmmesh").joinpath(DEFAULT_POLICY).read_text()
    )
    policy["providers"]["instances"][0]["tokens_per_s"] = 20
    policy_file = tmp_path / "slow-policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    slow = {"LLMMESH_POLICY_FILE": str(policy_file), "LLMMESH_ROUTER_DRAIN_DELAY_S": "0.5"}
    with local_mesh(tmp_path / "services.log", slow) as mesh:
        with grpc.insecure_channel(mesh.router_address) as channel:
            router = router_service_pb2_grpc.RouterServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            stream = router.StreamComplete(
                _request("a slow answer", parameters=chat_pb2.GenerationParameters(max_tokens=30)),
                metadata=AUTH_METADATA,
                timeout=30,
            )
            first = next(stream)
            assert first.HasField("delta")
            mesh.processes["router"].process.send_signal(signal.SIGTERM)
            draining = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert draining.status == health_pb2.HealthCheckResponse.NOT_SERVING
            rest = list(stream)
        assert rest[-1].HasField("summary")
        assert len(rest) >= 10
        assert mesh.processes["router"].process.wait(10) == 0
        codes = mesh.stop()
    assert all(code == 0 for code in codes.values()), codes


def test_stop_signals_that_keep_coming_while_a_service_exits_do_not_kill_it(
    tmp_path: pathlib.Path,
) -> None:
    # Ctrl-C reaches every process of the group and a supervisor then sends SIGTERM: a stop
    # signal can land after a service has drained, while it exits. It must still exit 0.
    with local_mesh(tmp_path / "services.log") as mesh:
        processes = {name: member.process for name, member in mesh.processes.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.poll() is None for p in processes.values()):
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            time.sleep(0.002)
        codes = {name: process.wait(5) for name, process in processes.items()}
    assert codes == dict.fromkeys(SERVICES, 0)
