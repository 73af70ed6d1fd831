"""Router drills against real processes: a provider replica killed under load, upstreams that
hang or refuse in a storm, a router stopped with streams in flight, callers that never read,
and many streams at once. Each drill records what it expected and what it observed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import psutil
import pytest
import yaml

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import FakeOpenAI, Reply, hang, rate_limited
from llmmesh.testing.mesh import local_mesh, peer_channel_credentials
from tests.drills.conftest import DrillRecord

KEY = "drill-key"
METADATA = (("authorization", f"Bearer {KEY}"),)
BYPASS = router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_BYPASS)
# Room for every drill's traffic: only the limits a drill checks are small.
ROOMY_LIMITS = [
    {"name": "tenant-requests", "kind": "requests", "scope": "tenant", "limit": 1_000_000,
     "window_s": 60},
    {"name": "tenant-tokens", "kind": "tokens", "scope": "tenant", "limit": 1_000_000_000,
     "window_s": 600},
    {"name": "tenant-in-flight", "kind": "concurrency", "scope": "tenant", "limit": 1000},
]  # fmt: skip


def _model(name: str, instance: str, window: int = 32_000) -> dict[str, Any]:
    return {"name": name, "provider": instance, "upstream_model": name, "context_window": window}


def _fake_instance(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"name": name, "backend": "openai", "base_url": fake.base_url, "api_key_env": "",
            **extra}  # fmt: skip


def _policy(
    models: list[dict[str, Any]],
    instances: list[dict[str, Any]],
    *,
    limits: list[dict[str, Any]] | None = None,
    **routing: Any,
) -> dict[str, Any]:
    return {
        "tenants": [{"name": "drill", "tier": "drill", "api_keys_sha256": [hash_api_key(KEY)]}],
        "limits": {"tiers": {"drill": limits or ROOMY_LIMITS}},
        "models": models,
        "routing": routing,
        "providers": {"instances": instances},
    }


@contextlib.contextmanager
def _mesh(
    directory: pathlib.Path,
    policy: dict[str, Any],
    env: dict[str, str] | None = None,
    replicas: dict[str, int] | None = None,
) -> Iterator[Mesh]:
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy))
    environment = {"LLMMESH_POLICY_FILE": str(directory / "policy.yaml"), **(env or {})}
    with local_mesh(directory / "services.log", environment, replicas=replicas) as mesh:
        yield mesh


@contextlib.asynccontextmanager
async def _router(
    mesh: Mesh, *options: tuple[str, int]
) -> AsyncIterator[router_service_pb2_grpc.RouterServiceStub]:
    async with grpc.aio.insecure_channel(mesh.router_address, options=list(options)) as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def _request(model: str, **fields: Any) -> router_service_pb2.StreamCompleteRequest:
    return router_service_pb2.StreamCompleteRequest(
        model=model,
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=uuid.uuid4().hex)],
        cache=BYPASS,
        **fields,
    )


@dataclasses.dataclass
class Outcome:
    started_s: float
    ended_s: float
    model: str = ""
    reason: str = ""  # empty when the answer arrived whole

    @property
    def latency_s(self) -> float:
        return self.ended_s - self.started_s


async def _complete(
    router: router_service_pb2_grpc.RouterServiceStub, model: str, timeout_s: float = 10.0
) -> Outcome:
    started = time.monotonic()
    try:
        async for event in router.StreamComplete(
            _request(model), metadata=METADATA, timeout=timeout_s
        ):
            if event.HasField("summary"):
                return Outcome(started, time.monotonic(), model=event.summary.model)
    except grpc.aio.AioRpcError as error:
        return Outcome(started, time.monotonic(), reason=error_details(error).reason or "?")
    return Outcome(started, time.monotonic(), reason="NO_SUMMARY")


def _router_log(mesh_directory: pathlib.Path) -> list[dict[str, Any]]:
    lines = []
    for line in (mesh_directory / "services.log").read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("service") == "router":
                lines.append(entry)
    return lines


def _circuits_opened(mesh_directory: pathlib.Path) -> list[str]:
    return [
        str(entry.get("circuit"))
        for entry in _router_log(mesh_directory)
        if entry.get("message") == "circuit_changed" and entry.get("state") == "open"
    ]


class PeakMemory:
    """Samples the resident memory of some processes until stopped; keeps each one's peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.baseline_mib = self._sample()
        self.peak_mib = dict(self.baseline_mib)
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> dict[str, float]:
        return {n: p.memory_info().rss / 2**20 for n, p in self._processes.items()}

    async def _run(self) -> None:
        while True:
            for name, rss in self._sample().items():
                self.peak_mib[name] = max(self.peak_mib[name], rss)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        """Each process's peak growth over its baseline, in MiB."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {n: round(self.peak_mib[n] - self.baseline_mib[n], 1) for n in self.peak_mib}


async def _limit_usage(mesh: Mesh, limit_name: str) -> tuple[int, bool]:
    """What the tenant has used of a limit, and whether one more request is admitted,
    asked of the ratelimiter directly, as the router (the probe's own reservation is given
    back)."""
    address = f"127.0.0.1:{mesh.ports['ratelimiter']}"
    router_identity = peer_channel_credentials(mesh, "router")
    async with grpc.aio.secure_channel(address, router_identity) as channel:
        ratelimiter = ratelimit_service_pb2_grpc.RateLimitServiceStub(channel)
        response = await ratelimiter.Reserve(
            ratelimit_service_pb2.ReserveRequest(
                tenant="drill", model="probe", estimated_tokens=0, request_id=uuid.uuid4().hex
            )
        )
        admitted = response.decision == ratelimit_pb2.DECISION_ALLOW
        if admitted:
            await ratelimiter.Release(
                ratelimit_service_pb2.ReleaseRequest(reservation_id=response.reservation_id)
            )
        status = next(s for s in response.limits if s.name == limit_name)
        # An admitted probe took one request and one slot itself (and no tokens).
        own = int(admitted and status.kind != ratelimit_pb2.LIMIT_KIND_TOKENS)
        return int(status.limit - status.remaining) - own, admitted


# -- a provider replica killed under load ------------------------------------------------


async def test_killing_one_of_two_provider_processes_opens_no_circuit(
    drill: DrillRecord, tmp_path: pathlib.Path
) -> None:
    simulated = {"name": "sim", "backend": "simulated", "tokens_per_s": 40, "answer_tokens": 20,
                 "first_token_delay_ms": 150}  # fmt: skip
    policy = _policy(
        [_model("steady", "sim")],
        [simulated],
        breaker={"consecutive_failures": 3, "min_calls": 100, "recovery_timeout_s": 30},
    )
    with _mesh(tmp_path, policy, replicas={"provider": 2}) as mesh:
        victim = mesh.replicas[0]
        outcomes: list[Outcome] = []
        async with _router(mesh) as router:

            async def caller(offset_s: float, until: float) -> None:
                # Staggered, so that the kill finds streams in every phase of an answer.
                await asyncio.sleep(offset_s)
                while time.monotonic() < until:
                    outcomes.append(await _complete(router, "steady"))

            started = time.monotonic()
            load = [asyncio.create_task(caller(i * 0.04, started + 7.0)) for i in range(16)]
            await asyncio.sleep(2.5)
            killed_at = time.monotonic()
            os.kill(victim.process.pid, signal.SIGKILL)
            async with asyncio.timeout(30):
                await asyncio.gather(*load)
    cut_mid_answer = [o for o in outcomes if o.reason == "STREAM_INTERRUPTED"]
    other_failures = [o for o in outcomes if o.reason and o.reason != "STREAM_INTERRUPTED"]
    failed_after_kill = [o for o in outcomes if o.reason and o.started_s > killed_at]
    recovered_s = max((o.ended_s - killed_at for o in outcomes if o.reason), default=0.0)
    retried = [
        e for e in _router_log(tmp_path)
        if e.get("message") == "llmmesh.retry"
        and str(e.get("llmmesh.error.reason", "")).startswith("PROVIDER_")
    ]  # fmt: skip
    opened = _circuits_opened(tmp_path)
    after_kill = [o for o in outcomes if o.started_s > killed_at]
    drill.record(
        expected="no circuit opens; only answers cut mid-stream by the kill fail; every "
        "request started after the kill succeeds on the other replica",
        observed=f"{len(outcomes)} requests, {len(cut_mid_answer)} cut mid-stream, "
        f"{len(other_failures)} other failures, {len(failed_after_kill)} failed after the "
        f"kill, circuits opened: {opened or 'none'}",
        passed=not opened and not other_failures and not failed_after_kill and bool(after_kill),
        requests=len(outcomes),
        requests_after_kill=len(after_kill),
        cut_mid_stream=len(cut_mid_answer),
        retried_on_other_replica=len(retried),
        time_to_recover_s=round(recovered_s, 2),
    )
    assert not opened
    assert not other_failures, other_failures
    assert not failed_after_kill
    assert after_kill


# -- upstreams that hang or refuse -------------------------------------------------------


@dataclasses.dataclass
class FaultyUpstreams:
    hanging: FakeOpenAI
    storming: FakeOpenAI
    backup: FakeOpenAI
    directory: pathlib.Path
    mesh: Mesh


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyUpstreams]:
    with (
        serving_in_background(FakeOpenAI(default_reply=hang())) as hanging,
        serving_in_background(FakeOpenAI(default_reply=rate_limited(1.0))) as storming,
        serving_in_background(FakeOpenAI()) as backup,
    ):
        policy = _policy(
            [_model("hangs", "hanging"), _model("storms", "storming"), _model("backup", "backup")],
            [
                _fake_instance("hanging", hanging, request_timeout_s=1.0),
                _fake_instance("storming", storming),
                _fake_instance("backup", backup),
            ],
            fallbacks={"hangs": ["backup"], "storms": ["backup"]},
            breaker={"consecutive_failures": 5, "min_calls": 100, "recovery_timeout_s": 60},
        )
        directory = tmp_path_factory.mktemp("faulty-upstreams")
        with _mesh(directory, policy) as mesh:
            yield FaultyUpstreams(hanging, storming, backup, directory, mesh)


async def test_an_upstream_that_hangs_before_its_first_token_is_failed_over_and_counted(
    drill: DrillRecord, faulty: FaultyUpstreams
) -> None:
    deadline_s = 5.0
    async with _router(faulty.mesh) as router:
        outcomes = [await _complete(router, "hangs", timeout_s=deadline_s) for _ in range(6)]
    latencies = [round(o.latency_s, 2) for o in outcomes]
    served_by = {o.model or o.reason for o in outcomes}
    opened = "hanging/hangs" in _circuits_opened(faulty.directory)
    upstream_calls = faulty.hanging.request_count
    passed = (
        served_by == {"backup"}
        and max(latencies) < deadline_s
        and opened
        and upstream_calls == 5
        and latencies[-1] < 0.5
    )
    drill.record(
        expected=f"each of 6 requests answered by the fallback within its {deadline_s:.0f} s "
        "deadline after the instance's 1 s timeout; the 5th hang opens the circuit, so the "
        "6th does not wait for the hanging upstream",
        observed=f"served by {sorted(served_by)}; latencies {latencies} s; circuit opened: "
        f"{opened}; hanging upstream called {upstream_calls} times",
        passed=passed,
        instance_timeout_s=1.0,
        max_latency_s=max(latencies),
        latency_once_open_s=latencies[-1],
        upstream_calls=upstream_calls,
    )
    assert served_by == {"backup"}
    assert max(latencies) < deadline_s
    assert opened
    assert upstream_calls == 5
    assert latencies[-1] < 0.5


async def test_no_caller_sleeps_past_a_circuit_a_429_storm_opened(
    drill: DrillRecord, faulty: FaultyUpstreams
) -> None:
    retry_after_s = 1.0
    async with _router(faulty.mesh) as router:
        baseline = min([(await _complete(router, "backup")).latency_s for _ in range(3)])
        outcomes = await asyncio.gather(*(_complete(router, "storms") for _ in range(10)))
    latencies = sorted(o.latency_s for o in outcomes)
    served_by = {o.model or o.reason for o in outcomes}
    opened = "storming/storms" in _circuits_opened(faulty.directory)
    added_s = latencies[-1] - baseline
    drill.record(
        expected=f"10 concurrent callers meet 429 with Retry-After {retry_after_s:.0f} s; the "
        "circuit opens after 5 and every caller goes to the fallback at once, none sleeping "
        "out the Retry-After",
        observed=f"served by {sorted(served_by)}; circuit opened: {opened}; slowest caller "
        f"{latencies[-1]:.3f} s (fallback alone {baseline:.3f} s)",
        passed=served_by == {"backup"} and opened and latencies[-1] < retry_after_s,
        callers=len(outcomes),
        upstream_429s=faulty.storming.request_count,
        max_added_latency_s=round(added_s, 3),
        median_latency_s=round(statistics.median(latencies), 3),
    )
    assert served_by == {"backup"}
    assert opened
    assert latencies[-1] < retry_after_s


# -- a router stopped with streams in flight ---------------------------------------------


async def test_a_stopping_router_settles_every_stream_it_cancels(
    drill: DrillRecord, tmp_path: pathlib.Path
) -> None:
    streams = 20
    limits = [{"name": "tenant-in-flight", "kind": "concurrency", "scope": "tenant",
               "limit": streams}]  # fmt: skip
    slow = {"name": "sim", "backend": "simulated", "tokens_per_s": 5, "answer_tokens": 200}
    policy = _policy([_model("slow", "sim")], [slow], limits=limits)
    env = {"LLMMESH_ROUTER_GRACE_PERIOD_S": "1"}
    with _mesh(tmp_path, policy, env) as mesh:
        async with _router(mesh) as router:
            calls = [
                router.StreamComplete(_request("slow"), metadata=METADATA, timeout=60)
                for _ in range(streams)
            ]
            for call in calls:
                assert (await call.read()).HasField("delta")
            _, admitted_while_streaming = await _limit_usage(mesh, "tenant-in-flight")
            router_process = mesh.processes["router"].process
            stopped_at = time.monotonic()
            router_process.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(router_process.wait, 60)
            stop_s = time.monotonic() - stopped_at
            for call in calls:
                call.cancel()
        in_flight, admitted = await _limit_usage(mesh, "tenant-in-flight")
    drill.record(
        expected=f"SIGTERM with {streams} streams in flight and a 1 s grace period: the "
        "router cancels them, settles each before it exits, and leaves no lease held",
        observed=f"exit code {exit_code} after {stop_s:.1f} s; {in_flight} leases held "
        f"afterwards; a new request admitted: {admitted}",
        passed=exit_code == 0 and in_flight == 0 and admitted and not admitted_while_streaming,
        streams=streams,
        leaked_leases=in_flight,
        lost_settlements=in_flight,
        stop_s=round(stop_s, 2),
    )
    assert not admitted_while_streaming, "the drill's streams hold every slot"
    assert exit_code == 0
    assert in_flight == 0
    assert admitted


# -- callers that never read -------------------------------------------------------------


@pytest.mark.slow_drill
async def test_fifty_streams_never_read_cost_bounded_memory_and_upstream(
    drill: DrillRecord, tmp_path: pathlib.Path
) -> None:
    streams, stall_timeout_s = 50, 5.0
    # 100,000 chunks of 100 characters: 10 MB of text per answer.
    answer = tuple(f" {index:06d}{'y' * 92}" for index in range(100_000))
    max_tokens = len(answer)
    # Slow to refill, so that what the settlements charged is still visible afterwards.
    limits = [{"name": "tenant-tokens", "kind": "tokens", "scope": "tenant",
               "limit": 100_000_000, "window_s": 86_400}]  # fmt: skip
    with serving_in_background(FakeOpenAI(default_reply=Reply(chunks=answer))) as upstream:
        policy = _policy(
            [_model("long", "upstream", window=200_000)],
            [_fake_instance("upstream", upstream)],
            limits=limits,
        )
        env = {"LLMMESH_ROUTER_STALL_TIMEOUT_S": str(stall_timeout_s)}
        with _mesh(tmp_path, policy, env) as mesh:
            # One short answer read to its end measures the upstream's bytes per chunk.
            async with _router(mesh) as router:
                sample = chat_pb2.GenerationParameters(max_tokens=1000)
                async for _ in router.StreamComplete(
                    _request("long", parameters=sample), metadata=METADATA, timeout=30
                ):
                    pass
            whole_body_mib = upstream.requests[0].bytes_sent / 1000 * len(answer) / 2**20
            charged_before, _ = await _limit_usage(mesh, "tenant-tokens")
            pids = {"router": mesh.processes["router"].process.pid,
                    "provider": mesh.processes["provider"].process.pid}  # fmt: skip
            memory = PeakMemory(pids)
            memory.start()
            parameters = chat_pb2.GenerationParameters(max_tokens=max_tokens)
            # A fixed window (no bandwidth probing), as a client that may stall sets it.
            async with _router(mesh, ("grpc.http2.bdp_probe", 0)) as router:
                calls = [
                    router.StreamComplete(
                        _request("long", parameters=parameters), metadata=METADATA, timeout=120
                    )
                    for _ in range(streams)
                ]
                for call in calls:
                    assert (await call.read()).HasField("delta")
                stalled_at = time.monotonic()
                stalled = upstream.requests[1:]
                async with asyncio.timeout(stall_timeout_s + 30):
                    while sum(r.disconnected for r in stalled) < streams:
                        await asyncio.sleep(0.1)
                cancelled_after_s = time.monotonic() - stalled_at
                growth_mib = await memory.stop()
                endings = await asyncio.gather(*(_ending(call) for call in calls))
            await asyncio.sleep(1.0)  # the last settlements land just after the streams end
            charged_after, _ = await _limit_usage(mesh, "tenant-tokens")
    charged_tokens = charged_after - charged_before
    reasons = {reason for reason, _ in endings}
    delivered_mib = sum(chars for _, chars in endings) / 2**20
    sent_mib = [r.bytes_sent / 2**20 for r in stalled]
    reserved_tokens = streams * max_tokens
    passed = (
        reasons == {"STREAM_STALLED"}
        and max(sent_mib) < whole_body_mib / 2
        and 0 < charged_tokens < reserved_tokens / 2
    )
    drill.record(
        expected=f"{streams} streams read once and then never: each costs bounded memory, the "
        f"upstream stops after bounded bytes, and after the {stall_timeout_s:.0f} s stall "
        "timeout each ends STREAM_STALLED with its upstream call cancelled and what reached "
        "the router settled",
        observed=f"streams ended {sorted(reasons)} after {delivered_mib:.1f} MiB of text in "
        f"all; upstream cancelled {cancelled_after_s:.1f} s after the stall, having sent at "
        f"most {max(sent_mib):.1f} MiB of a {whole_body_mib:.0f} MiB answer; peak memory "
        f"growth {growth_mib} MiB; {charged_tokens} tokens charged of {reserved_tokens} "
        "reserved",
        passed=passed,
        router_peak_growth_mib=growth_mib["router"],
        provider_peak_growth_mib=growth_mib["provider"],
        upstream_mib_per_stream_max=round(max(sent_mib), 1),
        upstream_mib_per_stream_mean=round(statistics.mean(sent_mib), 1),
        upstream_answer_mib=round(whole_body_mib, 1),
        tokens_charged=charged_tokens,
        tokens_reserved=reserved_tokens,
        cancelled_after_s=round(cancelled_after_s, 1),
    )
    assert reasons == {"STREAM_STALLED"}
    assert max(sent_mib) < whole_body_mib / 2
    assert 0 < charged_tokens < reserved_tokens / 2


async def _ending(call: Any) -> tuple[str, int]:
    """How a stream that was left unread ends once it is read, and the text it held."""
    chars = 0
    try:
        while (event := await call.read()) is not grpc.aio.EOF:
            chars += len(event.delta.text)
    except grpc.aio.AioRpcError as error:
        return error_details(error).reason or error.code().name, chars
    return "COMPLETED", chars


# -- many streams at once ----------------------------------------------------------------


@pytest.mark.slow_drill
async def test_five_hundred_concurrent_streams_complete(
    drill: DrillRecord, tmp_path: pathlib.Path
) -> None:
    streams = 500
    paced = {"name": "sim", "backend": "simulated", "tokens_per_s": 20, "answer_tokens": 20}
    policy = _policy([_model("paced", "sim")], [paced])
    with _mesh(tmp_path, policy) as mesh:
        pids = {"router": mesh.processes["router"].process.pid,
                "provider": mesh.processes["provider"].process.pid}  # fmt: skip
        memory = PeakMemory(pids)
        memory.start()
        async with _router(mesh) as router:
            started = time.monotonic()
            async with asyncio.timeout(120):
                outcomes = await asyncio.gather(
                    *(_complete(router, "paced", timeout_s=60) for _ in range(streams))
                )
            wall_s = time.monotonic() - started
        growth_mib = await memory.stop()
    failed = [o.reason for o in outcomes if o.reason]
    latencies = sorted(o.latency_s for o in outcomes)
    drill.record(
        expected=f"{streams} concurrent streams of a paced 1 s answer all complete",
        observed=f"{streams - len(failed)} completed, failures {sorted(set(failed)) or 'none'}, "
        f"in {wall_s:.1f} s",
        passed=not failed,
        completed=streams - len(failed),
        wall_s=round(wall_s, 1),
        p50_latency_s=round(latencies[len(latencies) // 2], 2),
        p99_latency_s=round(latencies[int(len(latencies) * 0.99) - 1], 2),
        router_peak_growth_mib=growth_mib["router"],
        provider_peak_growth_mib=growth_mib["provider"],
    )
    assert not failed
