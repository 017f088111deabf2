"""One access-log line per request that names the matched route, never the concrete path.

Paths carry identifiers: ``/api/v1/cases/{case_ref}`` and ``/cases/{case_ref}`` accept an MRN,
a FHIR Patient.id, a USUBJID or ``DATASET:ID``. uvicorn's own access log prints the concrete path,
so ``medassist serve`` turns it off and this middleware logs instead, to ``medassist.access``::

    127.0.0.1:50312 "GET /api/v1/cases/{case_ref}/similar" 200 41ms

A path no route matched is logged as its first segment when that is a plain word (and ``/v1``
after it), then ``[unmatched]`` (``/api/v1/[unmatched]``): whatever follows could be anything a
client typed. Query strings are never logged.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medassist.privacy.crypto import coarse_path

__all__ = ["AccessLog", "route_path"]

log = logging.getLogger("medassist.access")

UNMATCHED = "[unmatched]"


def route_path(scope: Scope) -> str:
    """The template of the route that handled ``scope`` (``/api/v1/cases/{case_ref}/similar``);
    for a path no route matched, its first segment if a plain word (and ``/v1`` after it), then
    ``[unmatched]``. Never a path parameter, never a query.

    Routers included with a prefix hand the route to ``scope["route"]`` with its own template
    (``/{case_ref}/similar``) in some FastAPI versions and the full one in others, so the prefix
    is recovered from the concrete path: the shortest head whose tail the route's pattern
    matches. The router matched that head as the literal prefix, so it holds no parameter.
    """
    path = str(scope.get("path", ""))
    route = scope.get("route")
    regex, fmt = getattr(route, "path_regex", None), getattr(route, "path_format", None)
    if isinstance(fmt, str) and fmt.startswith("/") and regex is not None:
        for k in [i for i, c in enumerate(path) if c == "/"]:
            if regex.match(path[k:]):
                return path[:k] + fmt
    return coarse_path(path, placeholder=UNMATCHED)


class AccessLog:
    """Pure ASGI middleware: logs method, route template, status and duration of each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            log.info('%s "%s %s" %d %.0fms', who, scope.get("method", "?"), route_path(scope), status,
                     (time.perf_counter() - started) * 1000)
