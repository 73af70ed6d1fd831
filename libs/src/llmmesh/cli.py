"""`llmmesh`: run the mesh locally, chat through it, and check its health."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import threading
from typing import Annotated

import grpc

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import DEFAULT_HEALTH_PORTS, DEFAULT_PORTS, SERVICES, Mesh, PortInUseError
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.health import describe, read_health
from llmmesh.traceview import fetch_from_jaeger, render_tree

try:
    import typer
except ImportError:  # pragma: no cover - depends on how llmmesh-libs was installed
    raise SystemExit(
        "the llmmesh command needs the cli extra: pip install 'llmmesh-libs[cli]'"
    ) from None

DEV_API_KEY = "llmmesh-dev-key"

# Conditions a service reports beside its status (Wiring.health_notes), with what they mean.
HEALTH_NOTES = {
    "cache": (
        (
            "llmmesh.cache.v1.CacheService/semantic-embeddings",
            "semantic lookups run on simulated embeddings: paraphrases rarely hit "
            "(set LLMMESH_CACHE_EMBEDDER=local)",
        ),
    ),
}

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

ApiKey = Annotated[str, typer.Option(envvar="LLMMESH_API_KEY", help="API key sent to the router.")]
Router = Annotated[str, typer.Option(envvar="LLMMESH_ROUTER", help="Router address (host:port).")]


@app.command()
def up(
    chat: Annotated[
        str | None, typer.Option(help="Once the mesh serves, stream an answer to this prompt.")
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="Policy YAML file; default: the embedded policy.")
    ] = None,
    api_key: ApiKey = DEV_API_KEY,
    insecure_peers: Annotated[
        bool,
        typer.Option(
            envvar="LLMMESH_INSECURE_PEERS",
            help="Plain text between the services, any caller accepted (development only).",
        ),
    ] = False,
) -> None:
    """Start router, ratelimiter, cache and provider as local processes; Ctrl-C stops them.

    The services talk mTLS with certificates made for this run; the router's port stays
    plain text on 127.0.0.1.
    """
    env = dict(os.environ)
    if policy:
        env["LLMMESH_POLICY_FILE"] = policy
    for service in SERVICES:
        env.setdefault(f"LLMMESH_{service.upper()}_REFLECTION", "true")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Each service's usual port variables move it, as they would a service started alone.
    ports = _ports(env, "PORT", DEFAULT_PORTS)
    health_ports = _ports(env, "HEALTH_PORT", DEFAULT_HEALTH_PORTS)
    mesh = Mesh(ports, env, health_ports=health_ports,
                peers="insecure" if insecure_peers else "mtls")  # fmt: skip
    try:
        mesh.check_ports()
    except PortInUseError as error:
        typer.echo(f"llmmesh up: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        mesh.start()
        between = "in plain text (insecure peers)" if insecure_peers else "mTLS"
        typer.echo(f"the services talk {between}; the router's port is plain text", err=True)
        for service in SERVICES:
            member = mesh.processes[service]
            typer.echo(
                f"{service:<12} serving on {member.address} (health: {member.health_port})",
                err=True,
            )
        if chat:
            _stream_chat(mesh.router_address, api_key, chat, model="auto", max_tokens=0)
        typer.echo('mesh is up; try: llmmesh chat "hello"   (Ctrl-C stops it)', err=True)
        stop.wait()
    finally:
        typer.echo("stopping...", err=True)
        codes = mesh.stop()
    failed = {service: code for service, code in codes.items() if code != 0}
    if failed:
        typer.echo(f"services exited uncleanly: {failed}", err=True)
        raise typer.Exit(1)


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str, typer.Option(help='Catalog model name or "auto".')] = "auto",
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Answer length bound; 0 = default.")] = 0,
    no_cache: Annotated[bool, typer.Option(help="Bypass the cache.")] = False,
    tools: Annotated[
        pathlib.Path | None,
        typer.Option(
            help='A JSON file of tools to offer: [{"name", "description", "parameters"}], '
            "parameters being a JSON Schema object.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    router: Router = f"127.0.0.1:{DEFAULT_PORTS['router']}",
    api_key: ApiKey = DEV_API_KEY,
) -> None:
    """Stream an answer through the router to the terminal; tool calls are printed whole."""
    _stream_chat(router, api_key, prompt, model=model, max_tokens=max_tokens,
                 system=system, no_cache=no_cache,
                 tools=_read_tools(tools) if tools else [])  # fmt: skip


def _read_tools(path: pathlib.Path) -> list[chat_pb2.ToolDefinition]:
    try:
        listed = json.loads(path.read_text())
        if not isinstance(listed, list):
            raise ValueError("the file must hold a JSON list of tools")
        return [
            chat_pb2.ToolDefinition(
                name=str(tool["name"]),
                description=str(tool.get("description", "")),
                parameters_json_schema=json.dumps(tool.get("parameters", {"type": "object"})),
            )
            for tool in listed
        ]
    except (ValueError, KeyError, TypeError) as error:
        typer.echo(f"error: {path}: not a list of tools ({error})", err=True)
        raise typer.Exit(2) from None


def _ports(env: dict[str, str], variable: str, defaults: dict[str, int]) -> dict[str, int]:
    return {
        service: int(env.get(f"LLMMESH_{service.upper()}_{variable}", port))
        for service, port in defaults.items()
    }


HEALTH_PORT_HELP = "Its plain-text health port."


@app.command()
def health(
    router: Annotated[
        int, typer.Option(envvar="LLMMESH_ROUTER_HEALTH_PORT", help=HEALTH_PORT_HELP)
    ] = (DEFAULT_HEALTH_PORTS["router"]),
    ratelimiter: Annotated[
        int, typer.Option(envvar="LLMMESH_RATELIMITER_HEALTH_PORT", help=HEALTH_PORT_HELP)
    ] = (DEFAULT_HEALTH_PORTS["ratelimiter"]),
    cache: Annotated[
        int, typer.Option(envvar="LLMMESH_CACHE_HEALTH_PORT", help=HEALTH_PORT_HELP)
    ] = (DEFAULT_HEALTH_PORTS["cache"]),
    provider: Annotated[
        int, typer.Option(envvar="LLMMESH_PROVIDER_HEALTH_PORT", help=HEALTH_PORT_HELP)
    ] = (DEFAULT_HEALTH_PORTS["provider"]),
    host: Annotated[str, typer.Option(help="Host the services run on.")] = "127.0.0.1",
) -> None:
    """Show each service's readiness, read from its plain-text health port, and why it is
    degraded or not ready; exit 1 unless all are SERVING (degraded counts as serving)."""
    ports = {"router": router, "ratelimiter": ratelimiter, "cache": cache, "provider": provider}
    all_serving = True
    for service, port in ports.items():
        status = _health_status(f"{host}:{port}")
        all_serving &= status.startswith("SERVING")
        typer.echo(f"{service:<12} {host}:{port:<6} {status}")
        for note, meaning in HEALTH_NOTES.get(service, ()):
            if _health_status(f"{host}:{port}", note) == "NOT_SERVING":
                typer.echo(f"{'':<12} note: {meaning}")
    if not all_serving:
        raise typer.Exit(1)


@app.command("trace")
def trace_view(
    trace_id: Annotated[
        str, typer.Argument(help="Trace id (32 hex digits), e.g. from a log line.")
    ],
    jaeger: Annotated[
        str, typer.Option(envvar="LLMMESH_JAEGER_URL", help="Jaeger query URL.")
    ] = "http://127.0.0.1:16686",
) -> None:
    """Show where one request's time went, hop by hop, from Jaeger."""
    try:
        spans = fetch_from_jaeger(jaeger, trace_id)
    except OSError as error:
        typer.echo(f"cannot read trace {trace_id} from {jaeger}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render_tree(spans))


def _health_status(address: str, service: str = "") -> str:
    """`SERVING`, `SERVING (degraded: why)`, `NOT_SERVING (why)` or `UNREACHABLE (code)`."""
    with grpc.insecure_channel(address) as channel:
        try:
            status, reason = read_health(channel, service)
        except grpc.RpcError as error:
            return f"UNREACHABLE ({error.code().name})"
    return describe(status, reason)


def _stream_chat(
    router: str,
    api_key: str,
    prompt: str,
    *,
    model: str,
    max_tokens: int,
    system: str | None = None,
    no_cache: bool = False,
    tools: list[chat_pb2.ToolDefinition] | None = None,
) -> None:
    messages = []
    if system:
        messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=system))
    messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt))
    request = router_service_pb2.StreamCompleteRequest(
        model=model,
        messages=messages,
        parameters=chat_pb2.GenerationParameters(max_tokens=max_tokens, tools=tools or []),
        cache=router_pb2.CacheControl(
            mode=caching_pb2.CACHE_MODE_BYPASS if no_cache else caching_pb2.CACHE_MODE_UNSPECIFIED
        ),
    )
    calls = _ToolCalls()
    with grpc.insecure_channel(router) as channel:
        stub = router_service_pb2_grpc.RouterServiceStub(channel)
        try:
            for event in stub.StreamComplete(
                request, metadata=[("authorization", f"Bearer {api_key}")], timeout=120
            ):
                if event.HasField("delta"):
                    sys.stdout.write(event.delta.text)
                    sys.stdout.flush()
                elif event.HasField("tool_call"):
                    calls.add(event.tool_call)
                elif event.HasField("summary"):
                    calls.print()
                    _print_summary(event.summary)
        except grpc.RpcError as error:
            details = error_details(error)
            sys.stdout.write("\n")
            typer.echo(f"error: {details.code.name} {details.reason}: {details.message}", err=True)
            raise typer.Exit(1) from None


class _ToolCalls:
    """Tool-call fragments put together by index, printed whole once the answer is done."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, piece: chat_pb2.ToolCallDelta) -> None:
        call = self._calls.setdefault(piece.index, ["", "", ""])
        call[0] = call[0] or piece.id
        call[1] = call[1] or piece.name
        call[2] += piece.arguments_fragment

    def print(self) -> None:
        for _, (call_id, name, arguments) in sorted(self._calls.items()):
            sys.stdout.write(f"\n-> tool call {name}({arguments}) [{call_id}]")


def _print_summary(summary: router_pb2.CompletionSummary) -> None:
    sys.stdout.write("\n")
    cache = caching_pb2.CacheStatus.Name(summary.cache_status).removeprefix("CACHE_STATUS_")
    typer.echo(
        f"[{summary.model} via {summary.provider} · cache {cache.lower()} · "
        f"{summary.usage.input_tokens}+{summary.usage.output_tokens} tokens · "
        f"${summary.cost_usd:.6f} · request {summary.request_id}]",
        err=True,
    )
