"""The request features a backend may lack, and fitting a request to one backend's support.

Nothing is dropped silently: each backend declares, per feature, whether it maps it, refuses
it (INVALID_ARGUMENT naming every field that uses it) or drops it (the field is named in the
summary's `ignored_parameters`). The README's feature table is rendered from these
declarations, and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import grpc

from llmmesh.runtime.errors import FieldViolation, RpcFailure
from llmmesh_provider.backend import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    Support,
)
from llmmesh_provider.upstream_errors import UpstreamTarget


@dataclasses.dataclass(frozen=True)
class Feature:
    """One thing a request may ask of a backend."""

    key: str
    # How the README's table names it.
    label: str
    # The field paths where a request uses it; empty when it does not.
    used_at: Callable[[ChatRequest], list[str]]
    # The catalog capability it belongs to, so a refusal tells the router what to look for.
    capability: str = ""
    # The request without it, for features a backend may drop.
    without: Callable[[ChatRequest], ChatRequest] | None = None


def _sampling(request: ChatRequest, **changes: object) -> ChatRequest:
    return dataclasses.replace(request, sampling=dataclasses.replace(request.sampling, **changes))  # type: ignore[arg-type]


def _set(value: object, path: str) -> list[str]:
    return [path] if value is not None else []


def _parts_at(request: ChatRequest, wanted: Callable[[object], bool], suffix: str) -> list[str]:
    return [
        f"messages[{m}].parts[{p}].{suffix}"
        for m, message in enumerate(request.messages)
        for p, part in enumerate(message.parts)
        if wanted(part)
    ]


def _without_reasoning_parts(request: ChatRequest) -> ChatRequest:
    def kept(message: Message) -> Message:
        parts = tuple(p for p in message.parts if not isinstance(p, ReasoningPart))
        return dataclasses.replace(message, parts=parts)

    return dataclasses.replace(request, messages=tuple(kept(m) for m in request.messages))


def _choice_is(mode: str) -> Callable[[ChatRequest], list[str]]:
    def used_at(request: ChatRequest) -> list[str]:
        choice = request.tools.choice
        return ["parameters.tool_choice.mode"] if choice and choice.mode == mode else []

    return used_at


def _format_is(kind: str, path: str) -> Callable[[ChatRequest], list[str]]:
    return lambda request: [path] if request.sampling.response_format.kind == kind else []


FEATURES: tuple[Feature, ...] = (
    Feature(
        "temperature",
        "temperature",
        lambda r: _set(r.sampling.temperature, "parameters.temperature"),
    ),
    Feature("top_p", "top_p", lambda r: _set(r.sampling.top_p, "parameters.top_p")),
    Feature(
        "top_k",
        "top_k",
        lambda r: _set(r.sampling.top_k, "parameters.top_k"),
        without=lambda r: _sampling(r, top_k=None),
    ),
    Feature(
        "max_tokens",
        "max_tokens",
        lambda r: ["parameters.max_tokens"] if r.sampling.max_tokens else [],
    ),
    Feature("stop", "stop sequences", lambda r: ["parameters.stop"] if r.sampling.stop else []),
    Feature(
        "seed",
        "seed",
        lambda r: _set(r.sampling.seed, "parameters.seed"),
        without=lambda r: _sampling(r, seed=None),
    ),
    Feature(
        "tools",
        "tools (function calling)",
        lambda r: ["parameters.tools"] if r.tools.offered else [],
        capability="tools",
    ),
    Feature(
        "tool_strict",
        "strict tool arguments",
        lambda r: [
            f"parameters.tools[{i}].strict" for i, t in enumerate(r.tools.offered) if t.strict
        ],
        capability="tools",
    ),
    Feature("tool_choice_auto", "tool_choice auto", _choice_is("auto"), capability="tools"),
    Feature("tool_choice_none", "tool_choice none", _choice_is("none"), capability="tools"),
    Feature(
        "tool_choice_required", "tool_choice required", _choice_is("required"), capability="tools"
    ),
    Feature(
        "tool_choice_named", "tool_choice of a named tool", _choice_is("named"), capability="tools"
    ),
    Feature(
        "parallel_tool_calls_off",
        "parallel_tool_calls false",
        lambda r: ["parameters.parallel_tool_calls"] if r.tools.parallel_calls is False else [],
        capability="tools",
    ),
    Feature(
        "tool_results",
        "tool calls and results in the conversation",
        lambda r: [
            f"messages[{i}]" for i, m in enumerate(r.messages) if m.role == "tool" or m.tool_calls
        ],
        capability="tools",
    ),
    Feature(
        "json_object",
        "response_format json_object",
        _format_is("json_object", "parameters.response_format.type"),
        capability="json",
    ),
    Feature(
        "json_schema",
        "response_format json_schema",
        _format_is("json_schema", "parameters.response_format.json_schema"),
        capability="json_schema",
    ),
    Feature(
        "reasoning_effort",
        "reasoning_effort",
        lambda r: _set(r.sampling.reasoning_effort, "parameters.reasoning_effort"),
        capability="reasoning",
    ),
    Feature(
        "reasoning_parts",
        "earlier reasoning passed back",
        lambda r: _parts_at(r, lambda p: isinstance(p, ReasoningPart), "reasoning"),
        without=_without_reasoning_parts,
    ),
    Feature(
        "image_url",
        "image by URL",
        lambda r: _parts_at(r, lambda p: isinstance(p, ImagePart) and bool(p.url), "image.url"),
        capability="vision",
    ),
    Feature(
        "image_data",
        "image as inline bytes",
        lambda r: _parts_at(r, lambda p: isinstance(p, ImagePart) and bool(p.data), "image.data"),
        capability="vision",
    ),
)

FEATURE_KEYS = frozenset(feature.key for feature in FEATURES)


def supporting(
    refused: tuple[str, ...] = (), dropped: tuple[str, ...] = ()
) -> Mapping[str, Support]:
    """A backend's table: every feature supported but those named."""
    unknown = (set(refused) | set(dropped)) - FEATURE_KEYS
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    table = dict.fromkeys(FEATURE_KEYS, Support.SUPPORTED)
    table.update(dict.fromkeys(refused, Support.REFUSED))
    table.update(dict.fromkeys(dropped, Support.DROPPED))
    return table


@dataclasses.dataclass(frozen=True)
class FittedRequest:
    request: ChatRequest
    # Field paths of what was dropped, for the summary.
    ignored_parameters: tuple[str, ...]


def fit_to_backend(
    request: ChatRequest, support: Mapping[str, Support], target: UpstreamTarget
) -> FittedRequest:
    """The request with what the backend drops left out; raises INVALID_ARGUMENT naming
    every field the backend refuses."""
    violations: list[FieldViolation] = []
    capabilities: list[str] = []
    ignored: list[str] = []
    for feature in FEATURES:
        paths = feature.used_at(request)
        if not paths:
            continue
        verdict = support.get(feature.key, Support.REFUSED)
        if verdict is Support.DROPPED and feature.without is not None:
            request = feature.without(request)
            ignored.extend(paths)
        elif verdict is not Support.SUPPORTED:
            violations.extend(
                FieldViolation(
                    path, f"{feature.label} is not supported by the {target.backend} backend"
                )
                for path in paths
            )
            if feature.capability and feature.capability not in capabilities:
                capabilities.append(feature.capability)
    if violations:
        raise unsupported(target, violations, capabilities)
    return FittedRequest(request, tuple(ignored))


def unsupported(
    target: UpstreamTarget, violations: list[FieldViolation], capabilities: list[str]
) -> RpcFailure:
    """INVALID_ARGUMENT for what this backend cannot do; CAPABILITY_UNSUPPORTED (with the
    catalog capabilities in metadata) tells the router another model may do it."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    metadata = target.metadata()
    if capabilities:
        metadata["capability"] = ",".join(capabilities)
    return RpcFailure(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{target.instance} cannot serve this request: {summary}",
        reason="CAPABILITY_UNSUPPORTED" if capabilities else "UNSUPPORTED_PARAMETER",
        metadata=metadata,
        field_violations=violations,
    )


def feature_table(backends: Mapping[str, Mapping[str, Support]]) -> str:
    """The README's markdown table: one row per feature, one column per backend."""
    names = list(backends)
    lines = [
        "| feature | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for feature in FEATURES:
        cells = [backends[name].get(feature.key, Support.REFUSED).value for name in names]
        lines.append(f"| {feature.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
