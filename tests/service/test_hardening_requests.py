"""Issue 12, "every request answered": uploads parsed by the one table reader, cohort filters
with bounded nesting, and absurd numbers refused naming their column. Each case once answered
500 (or leaked an internal); each must now be a 4xx with a one-line message, nothing recorded."""

from __future__ import annotations

import pytest

from medassist.store.models import AuditEntry, Prediction
from medassist.testing.server import csrf_of, example_csv, example_row


def _counts(site) -> tuple[int, int]:
    return site.count(Prediction), site.count(AuditEntry)


@pytest.mark.parametrize("surface", ["api", "page"])
def test_an_unsniffable_or_one_column_csv_is_a_4xx_naming_the_problem(site, tiny_bundle, surface):
    if surface == "api":
        client, url, extra = site.api("clinician"), f"/api/v1/diagnosis/{site.bundle_id}/predict-file", {}
    else:
        client, url = site.browser("clinician"), f"/diagnosis/{site.bundle_id}/predict-file"
        extra = {"csrf_token": csrf_of(client.get("/account").text)}
    before = _counts(site)
    for name, data, expected in [
        ("emoji.csv", "😀".encode(), "emoji.csv: the header is there but there are no data rows"),
        ("emoji.csv", "😀\n😀\n".encode(), "the model needs column(s)"),
        ("radius.csv", b"mean radius\n17.99\n20.57\n", "(it has: mean radius)"),
        ("ragged.csv", b"age,sex\n61,Male,1,2\n", "more values than the header has columns"),
    ]:
        r = client.post(url, files={"file": (name, data, "text/csv")}, data=extra)
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
        text = r.json()["detail"] if surface == "api" else r.text
        assert expected in text, (name, text[:500])
        if surface == "api":
            assert "\n" not in text
    assert _counts(site) == before
    # The same connection goes on serving: the refusal did not close or poison it.
    r = client.post(url, files={"file": ("patients.csv", example_csv(tiny_bundle), "text/csv")}, data=extra)
    assert r.status_code == 200 and r.headers.get("connection", "").lower() != "close"


def test_keep_alive_survives_a_bad_upload(site, tiny_bundle):
    seen = []
    with site.api("clinician") as client:
        def remember(response):
            seen.append(response.extensions.get("network_stream"))

        client.event_hooks["response"] = [remember]
        url = f"/api/v1/diagnosis/{site.bundle_id}/predict-file"
        for data in ("😀".encode(), b"mean radius\n1\n", example_csv(tiny_bundle)):
            r = client.post(url, files={"file": ("x.csv", data, "text/csv")})
            assert r.status_code in (200, 422) and r.headers.get("connection", "").lower() != "close"
    assert len(seen) == 3 and seen[0] is not None
    assert seen[0] is seen[1] is seen[2], "a request after a refused upload opened a new connection"


def test_absurd_or_non_finite_numbers_are_refused_naming_the_column(site, tiny_bundle):
    api = site.api("clinician")
    url = f"/api/v1/diagnosis/{site.bundle_id}/predict"
    row = example_row(tiny_bundle)
    before = _counts(site)
    for value in (1e308, -1e308, 1e200, 1e13):
        r = api.post(url, json={"row": {**row, "age": value}})
        assert r.status_code == 422, (value, r.text[:300])
        detail = r.json()["detail"]
        assert "column 'age': expected a finite number" in detail and f"got {value:g}" in detail, detail
        assert "TemperatureScaler" not in detail and "logits" not in detail
    r = api.post(url, content=b'{"rows": [' + b'{"age": 1e999}' + b"]}", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "TemperatureScaler" not in r.text
    csv = example_csv(tiny_bundle).decode().splitlines()
    age = csv[0].split(",").index("age")
    for token in ("1e308", "inf", "-Infinity"):
        cells = csv[1].split(",")
        cells[age] = token
        body = "\n".join([csv[0], ",".join(cells)]) + "\n"
        r = api.post(f"{url}-file", files={"file": ("p.csv", body.encode(), "text/csv")})
        assert r.status_code == 422, (token, r.text[:300])
        assert "p.csv: row 1, column 'age': expected a finite number" in r.json()["detail"], r.json()["detail"]
    assert _counts(site) == before
    assert api.post(url, json={"row": row}).status_code == 200


@pytest.fixture(scope="module")
def veteran(site):
    from medassist.data.datasets.cases import load_cases
    from medassist.privacy.crypto import IdentifierHasher
    from medassist.store.cases import CaseStore

    ctx = site.app.state.ctx
    store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(site.settings))
    store.import_records(load_cases("veteran").cases, source="veteran", source_kind="table")
    return "veteran"


@pytest.mark.parametrize("where", [
    "(" * 250 + "age > 60" + ")" * 250,
    "not " * 490 + "age > 60",
    "(not " * 20 + "age > 60" + ")" * 20,
])
def test_a_deeply_nested_cohort_filter_is_refused_naming_the_limit(site, veteran, where):
    api = site.api("clinician")
    for path in ("/api/v1/cases/cohort", "/api/v1/cases/cohort/km.png"):
        r = api.get(path, params={"dataset": veteran, "where": where})
        assert r.status_code == 422, (path, r.status_code, r.text[:300])
        assert "nested more than 32 levels" in r.json()["detail"]
    page = site.browser("clinician").get("/cases/cohort", params={"dataset": veteran, "where": where})
    assert page.status_code == 422 and "nested more than 32 levels" in page.text
    ok = api.get("/api/v1/cases/cohort", params={"dataset": veteran, "where": "(" * 32 + "age > 60" + ")" * 32})
    assert ok.status_code == 200, ok.text[:300]
