"""Names of the stored keys and reservation ids, with the Redis Cluster hash tag in each.

Every key of one decision carries the same `{tag}`, so the decision's single Lua script runs
on one cluster node. The reservation id starts with the tag too, which lets any replica find
the reservation record (and its slot) from the id alone. Names are percent-encoded so that no
tenant or model name can contain a brace, a colon or a slash that would break the layout.
"""

from __future__ import annotations

import hashlib
import urllib.parse
import uuid

from llmmesh_ratelimiter.limits import LimitKind, LimitScope
from llmmesh_ratelimiter.rate_policy import HashTagScope

KEY_PREFIX = "llmmesh:rl"
GLOBAL_TAG = "all"


def _encoded(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def decision_tag(scope: HashTagScope, tenant: str, model: str) -> str:
    """The hash tag shared by every key of a decision on `tenant` calling `model`."""
    if scope is HashTagScope.TENANT:
        return _encoded(tenant)
    if scope is HashTagScope.MODEL:
        return _encoded(model)
    return GLOBAL_TAG


def limit_key(
    tag: str, name: str, kind: LimitKind, scope: LimitScope, tenant: str, model: str
) -> str:
    """The key holding one limit's bucket (or lease set) for the subject the scope picks."""
    if scope is LimitScope.TENANT:
        subject = _encoded(tenant)
    elif scope is LimitScope.MODEL:
        subject = _encoded(model)
    else:
        subject = f"{_encoded(tenant)}:{_encoded(model)}"
    return f"{KEY_PREFIX}:{{{tag}}}:{kind.value}:{_encoded(name)}:{subject}"


def new_reservation_id(tag: str, tenant: str, request_id: str) -> str:
    """A reservation id; the same tenant and request id always give the same one."""
    if request_id:
        token = hashlib.sha256(f"{tenant}\x00{request_id}".encode()).hexdigest()[:32]
    else:
        token = uuid.uuid4().hex
    return f"{tag}/{token}"


def new_attempt_id() -> str:
    """Names one try at a decision."""
    return uuid.uuid4().hex


def abandoned_key(record: str, attempt: str) -> str:
    """The marker that forbids a given-up try from taking anything if it reaches Redis late;
    beside the record, in the same hash slot."""
    return f"{record}:abandoned:{attempt}"


def record_key(reservation_id: str) -> str | None:
    """The key of a reservation's record, or None when the id is not one of ours."""
    tag, separator, token = reservation_id.partition("/")
    if not separator or not tag or not token or "/" in token or "{" in tag or "}" in tag:
        return None
    return f"{KEY_PREFIX}:{{{tag}}}:reservation:{token}"
