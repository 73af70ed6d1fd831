"""Exceptions described without their messages, for logs and spans.

An exception's message often quotes the data that broke the code (a parser's "invalid
literal for int() with base 10: '42 mg'", a KeyError's key, a decoder's offending bytes),
and in this mesh the data is prompts and answers. So logs and spans get an exception's type
and where it was raised, never its text: in the interceptor's unhandled-error path, in every
structlog line with `exc_info`, and in errors the event loop reports.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# What structlog's ExceptionDictTransformer writes from an exception's text rather than its
# type and frames.
_MESSAGE_KEYS = ("exc_value", "exc_notes", "syntax_error")


def exception_type(error: BaseException) -> str:
    """`ValueError`, or `module.Class` for exceptions defined outside the builtins."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def traceback_without_messages(error: BaseException) -> str:
    """The traceback Python would print, causes included, each naming only its exception type."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts: list[str] = []
    for exc in reversed(chain):
        if parts:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        parts.append(exception_type(exc) + "\n")
    return "".join(parts)


def drop_exception_messages(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor, after ExceptionRenderer: keeps types and frames, drops texts."""
    _strip(event.get("exception"))
    return event


def _strip(rendered: Any) -> None:
    if isinstance(rendered, list):
        for item in rendered:
            _strip(item)
    elif isinstance(rendered, dict):
        for key in _MESSAGE_KEYS:
            rendered.pop(key, None)
        _strip(rendered.get("exceptions"))  # the members of an exception group


def log_loop_exception(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's exception handler: asyncio's default one prints the failed task or
    callback with its arguments and the exception's repr, any of which may hold a prompt."""
    error = context.get("exception")
    if isinstance(error, BaseException):
        log.error("event_loop_error", error_type=exception_type(error), exc_info=error)
    else:
        log.error("event_loop_error", context_keys=sorted(context))
