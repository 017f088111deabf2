"""The REST API against its own OpenAPI schema, fuzzed (schemathesis): every operation, as an
admin and as a clinician, with generated parameters and bodies; path parameters are a real
bundle, job, case or evaluation id about half the time, so requests get past "not found".

Each answer must not be a server error (5xx), must carry a status the schema documents, and must
match the documented body (the ``ErrorBody`` of every error included). Bounded: a few examples per
operation (``MAX_EXAMPLES``), no shrinking; about a minute on two cores. ``FUZZ_ONLY=cases/code``
fuzzes only the operations whose label holds that text.

The operations are walked here, one Hypothesis test each, rather than through
``schemathesis.pytest.from_fixture``: that integration fails on pytest 9 (it reads
``node._nodeid``), and one loop reports every failing operation at once.
"""

from __future__ import annotations

import os
import time
import traceback

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from medassist.data.datasets.cases import load_cases
from medassist.privacy.crypto import IdentifierHasher
from medassist.store.cases import CaseStore
from medassist.testing.assistants import example_library

SITE_ASSISTANTS = True  # the imaging, treatment and screening bundles too: every operation has a real target
MAX_EXAMPLES = 15
ROLES = ("admin", "clinician")
#: Not ``positive_data_acceptance``: a schema-valid row can still be refused (422) for what only
#: the bundle knows (its columns and categories), which a static schema cannot say.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
#: Which bundle a {bundle_id} of each assistant's routes stands for (by bundle task).
BUNDLE_TASKS = {"diagnosis": "diagnosis-tabular", "imaging": "diagnosis-image", "treatment": "treatment", "screening": "screening",
                "prognosis": "survival"}


def _wait(fetch, done: set[str], what: str) -> dict:
    for _ in range(600):
        body = fetch()
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{what} did not finish: {body}")


@pytest.fixture(scope="module")
def real_ids(site) -> dict[str, str]:
    """Ids that exist: a finished screening job of the clinician's, an evaluation of the
    researcher's, a case of the veteran trial (with its similar-case model fitted)."""
    clinician, researcher = site.api("clinician"), site.api("researcher")
    r = clinician.post(f"/api/v1/screening/{site.bundle_ids['screening']}/jobs", files={"file": ("lib.smi", example_library(), "text/plain")})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    _wait(lambda: clinician.get(f"/api/v1/screening/jobs/{job}").json(), {"done"}, "screening job")
    r = researcher.post("/api/v1/research/evaluate", json={"bundle_id": site.bundle_id, "n_boot": 100})
    assert r.status_code == 200, r.text
    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    store.import_records(load_cases("veteran").cases, source="veteran", source_kind="table")
    case = store.list_cases(limit=1)[0]["case_id"]
    assert clinician.get(f"/api/v1/cases/{case}/risk").status_code == 200  # fits the model now, not inside the fuzzing
    # the first coding loads ICD-10-CM (10 to 40 s on two busy cores), once
    assert clinician.post("/api/v1/cases/code", json={"text": "Asthma."}, timeout=180).status_code == 200
    return {"job_id": job, "evaluation_id": r.json()["id"], "case_ref": case}


@pytest.fixture(scope="module")
def api_schema(site, real_ids):
    token = site.tokens["clinician"]
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", site.app, headers={"Authorization": f"Bearer {token}"})

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        path = context.operation.path
        assistant = path.removeprefix("/api/v1/").split("/")[0]
        real = dict(real_ids, bundle_id=site.bundle_ids.get(BUNDLE_TASKS.get(assistant, ""), site.bundle_id))
        names = {p.name for p in context.operation.path_parameters}
        return st.one_of(st.just({k: v for k, v in real.items() if k in names}), strategy)

    return schema


def test_api_answers_as_its_schema_says_and_never_with_a_server_error(api_schema, site):
    calls, failures, n_ops = 0, {}, 0
    only = os.environ.get("FUZZ_ONLY")  # e.g. FUZZ_ONLY="cases/code": fuzz the operations whose label holds it
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if only and only not in operation.label:
            continue
        n_ops += 1

        @settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:
            nonlocal calls
            for role in ROLES:  # the same request from each: an admin is refused most routes, a clinician reaches most
                calls += 1
                case.call_and_validate(headers={"Authorization": f"Bearer {site.tokens[role]}"}, checks=CHECKS, timeout=60)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 (every operation is fuzzed; all failures reported below)
            failures[operation.label] = "".join(traceback.format_exception(e))[-3000:]
    print(f"schemathesis: {n_ops} operations, {calls} calls, {len(failures)} failing")
    assert (only or n_ops >= 30) and not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def test_every_operation_documents_its_errors_with_the_one_error_body(site):
    spec = site.api("clinician").get("/api/v1/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["ErrorBody"]["properties"]["detail"]["type"] == "string"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = op["responses"]
            assert {"401", "403"} <= set(codes), (method, path)  # every API route takes a bearer token
            assert "{" not in path or "404" in codes, (method, path)
            for code, response in codes.items():
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
    r = site.api("clinician").get("/api/v1/cases/search", params={"limit": 0})
    body = r.json()
    assert r.status_code == 422 and isinstance(body["detail"], str) and "limit" in body["detail"]
    assert body["errors"] and "limit" in body["errors"][0]["loc"] and set(body["errors"][0]) == {"loc", "msg", "type"}
    assert site.api(None).get("/api/v1/me").json().keys() == {"detail"}
