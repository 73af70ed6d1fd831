"""A test build's crash: loaded only when a test puts this folder on PYTHONPATH.

In a service process it wraps every RPC method of the service's servicer so that a request
whose bytes hold `crash-in:<service>` fails the way parsing code does, with an exception
whose message quotes the request's text, inside the handler. Nothing of
this exists in a service started normally: no variable, flag or request turns it on.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any

SERVICERS = {
    "llmmesh_router": "llmmesh_router.servicer:RouterServicer",
    "llmmesh_ratelimiter": "llmmesh_ratelimiter.servicer:RateLimitServicer",
    "llmmesh_cache": "llmmesh_cache.servicer:CacheServicer",
    "llmmesh_provider": "llmmesh_provider.servicer:ProviderServicer",
}


def _crash_if_asked(service: str, request: Any) -> None:
    if f"crash-in:{service}".encode() in request.SerializeToString():
        text = str(request)
        try:
            int(text)
        except ValueError as error:  # the cause quotes at most 200 characters; this, all
            raise ValueError(f"could not parse a dose from {text!r}") from error


def _wrap(method: Any, service: str) -> Any:
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> Any:
            _crash_if_asked(service, request)
            async for item in method(self, request, context):
                yield item

        return stream

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        _crash_if_asked(service, request)
        return await method(self, request, context)

    return unary


def _install() -> None:
    argv = sys.orig_argv
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if module not in SERVICERS:
        return
    path, _, name = SERVICERS[module].partition(":")
    servicer = getattr(importlib.import_module(path), name)
    service = module.removeprefix("llmmesh_")
    for attribute, method in list(vars(servicer).items()):
        is_rpc = inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)
        if attribute[:1].isupper() and is_rpc:
            setattr(servicer, attribute, _wrap(method, service))


_install()
