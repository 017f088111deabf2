"""The one error body of the REST API, and the OpenAPI ``responses`` that document it.

Every error an ``/api/v1`` route gives leaves through the app's exception handlers (``app.py``)
as :class:`ErrorBody`: ``detail`` is one line for a person (what was wrong, what was expected);
a request that fails validation (422) adds ``errors``, one entry per problem, for programs.

``document_errors(router)`` writes into each route's ``responses`` the statuses that follow
from what the route is (its guard, path parameters, body, uploads); a route adds the ones only it
can give with ``responses=error_responses(409)`` and the like. Call it before the router is
included in an app (FastAPI reads ``responses`` when a router is included).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, params
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from medassist.service.auth import Require, Surface, guards_of


class Problem(BaseModel):
    """One problem of a request that failed validation (no input value: it may hold PHI)."""

    loc: list[str | int] = Field(description="where: ['body', 'rows', 0, 'age'], ['query', 'k'], ...")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer of the API."""

    detail: str = Field(description="What went wrong and what was expected, in one line.")
    errors: list[Problem] | None = Field(None, description="Only for a request that failed validation (422): each problem.")


#: What each status means on this API (the OpenAPI description of the response).
MEANINGS: dict[int, str] = {
    401: "No valid API token: send 'Authorization: Bearer <token>' (the answer carries 'WWW-Authenticate: Bearer').",
    403: "The token's role may not use this route, or the user must first change a one-time password in the web app.",
    404: "No such model bundle, job, case, evaluation or page (another user's job does not exist for you).",
    409: "The request conflicts with the current state: a job that has not finished, or an identifier that matches several cases.",
    413: "The request body or an upload is larger than the server accepts.",
    415: "The upload is not of a type this route accepts (checked by content, not by name).",
    422: "The request is not valid (a parameter, field, row or file): 'detail' names it and what was expected.",
    429: "Too many jobs: this user's, or the server's, limit of queued and running jobs is reached.",
    503: "A model is not usable now: the bundle is incomplete or was altered, or it is still being fitted (see Retry-After).",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer with ``codes``: each with :class:`ErrorBody`."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorBody, "description": MEANINGS[code]}
        if code == 401:
            out[code]["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        elif code == 503:
            out[code]["headers"] = {"Retry-After": {"description": "seconds, when the model is being fitted",
                                                    "schema": {"type": "string"}}}
    return out


def route_errors(route: APIRoute) -> tuple[int, ...]:
    """The statuses that follow from what ``route`` is (a route may give others, which it declares).

    - a bearer-token guard: 401, 403;
    - path parameters: 404 (nothing by that id); a ``bundle_id``: 503 (bundle unusable);
    - any parameter or body: 422 (validation, and the assistants' data errors);
    - a body: 413 (the app caps request bodies); an upload: 415 (content checks).
    """
    codes: set[int] = set()
    if any(isinstance(g, Require) and g.surface is Surface.API for g in guards_of(route)):
        codes |= {401, 403}
    dep = route.dependant
    flat = [*dep.path_params, *dep.query_params, *dep.body_params]
    for sub in dep.dependencies:  # parameters a route reads through a dependency (its guard reads none)
        flat += [*sub.path_params, *sub.query_params, *sub.body_params]
    if dep.path_params:
        codes.add(404)
    if any(p.name == "bundle_id" for p in dep.path_params):
        codes.add(503)
    if flat or route.body_field is not None:
        codes.add(422)
    if dep.body_params or route.body_field is not None:
        codes.add(413)
    if any(isinstance(p.field_info, params.File) for p in dep.body_params):
        codes.add(415)
    return tuple(sorted(codes))


def document_errors(router: APIRouter) -> APIRouter:
    """Write each API route's error statuses (with :class:`ErrorBody`) into its ``responses``;
    statuses the route declared itself are kept as they are. Idempotent."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            route.responses = {**error_responses(*route_errors(route)), **route.responses}
    return router
