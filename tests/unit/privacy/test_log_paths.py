"""Request paths in log lines: route templates, coarse paths, and uvicorn's access record."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from medassist.privacy.crypto import PHIFilter, coarse_path, redact
from medassist.service.access_log import AccessLog, route_path


@pytest.mark.parametrize(("path", "coarse"), [
    ("/api/v1/cases/MRN-0001/similar?k=5", "/api/v1/[path]"),
    ("/cases/veteran:6", "/cases/[path]"),
    ("/01-701-1015", "/[path]"),
    ("/Smith/x", "/[path]"),
    ("/healthz", "/healthz"),
    ("/", "/"),
])
def test_coarse_path_keeps_only_plain_leading_words(path, coarse):
    assert coarse_path(path) == coarse


@pytest.mark.parametrize("line", [
    "GET /cases/MRN-T00001/similar", "error on /api/v1/cases/01-701-1015", "see /cases/ward:fhirpt-xq4/risk",
])
def test_redact_replaces_a_case_reference_in_a_path(line):
    out = redact(line)
    assert "/cases/{case_ref}" in out and not any(x in out for x in ("MRN-T", "701-1015", "fhirpt"))


def test_redact_keeps_the_literal_case_routes():
    assert redact("/cases/cohort/km.png /api/v1/cases/search /cases/code /cases/{case_ref}") == \
        "/cases/cohort/km.png /api/v1/cases/search /cases/code /cases/{case_ref}"


def test_uvicorns_access_record_is_coarsened():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/v1/cases/QZMRN00004/risk?x=QZMRN00004", "1.1", 200), None)
    assert PHIFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /api/v1/[path] HTTP/1.1" 200'


def test_the_access_log_names_the_route_template(caplog):
    router = APIRouter()

    @router.get("/{case_ref}/similar")
    def similar(case_ref: str) -> dict:
        return {"ok": True}

    @router.get("/{case_ref}")
    def one(case_ref: str) -> dict:
        raise RuntimeError(case_ref)

    app = FastAPI()
    app.add_middleware(AccessLog)
    app.include_router(router, prefix="/api/v1/cases")
    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.INFO, logger="medassist.access"):
        assert client.get("/api/v1/cases/QZMRN00004/similar?k=3").status_code == 200
        assert client.get("/api/v1/cases/veteran:5").status_code == 500
        assert client.get("/api/v1/cases/QZMRN00004/a/b").status_code == 404
        assert client.post("/api/v1/cases/QZMRN00004/similar").status_code == 405
    lines = [r.getMessage() for r in caplog.records if r.name == "medassist.access"]
    assert [line.split('"')[1] for line in lines] == [
        "GET /api/v1/cases/{case_ref}/similar", "GET /api/v1/cases/{case_ref}", "GET /api/v1/[unmatched]",
        "POST /api/v1/cases/{case_ref}/similar",
    ]
    assert all("QZMRN" not in line and "veteran" not in line for line in lines)


def test_route_path_of_a_scope_without_a_route():
    assert route_path({"path": "/cases/QZMRN00004/x/y"}) == "/cases/[unmatched]"
