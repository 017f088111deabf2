"""The lean prediction path (issue 19): JSON rows → featurizer array without a table, cached API
tokens that still honour revocation, one audit transaction per micro-batch."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import numpy as np
import pytest

from medassist.assistants.diagnosis import DiagnosisAssistant
from medassist.data.catalog import get_dataset
from medassist.service import auth
from medassist.service.diagnosis import _Lean, predict_batch, predict_frame, rows_to_batch
from medassist.store.accounts import new_api_token
from medassist.store.audit import verify_chain
from medassist.store.models import ApiToken, AuditEntry, Prediction, User, utcnow
from medassist.testing.server import example_row
from medassist.types import SCORE_TOLERANCE


def _rows(bundle) -> list[dict]:
    base = example_row(bundle)
    numeric = [c for c, v in base.items() if isinstance(v, (int, float))]
    categorical = [c for c in base if c not in numeric]
    rows = [base]
    for i in range(7):
        row = dict(base)
        row[numeric[i % len(numeric)]] = None  # a missing value (imputed)
        row[numeric[(i + 1) % len(numeric)]] = base[numeric[(i + 1) % len(numeric)]] * (1.5 + i)  # some out of range
        if categorical:
            row[categorical[i % len(categorical)]] = None
        rows.append(row)
    return rows


def test_featurizer_arrays_are_bit_identical_to_the_table_path(tiny_bundle):
    assistant = DiagnosisAssistant.load(tiny_bundle)
    fz = assistant.bundle.featurizer
    batch = rows_to_batch(_rows(tiny_bundle), assistant, max_rows=100, source="t")
    lean = fz.transform_arrays(batch.columns, source="t")
    table = fz.transform(batch.to_frame(assistant.bundle.schema.id_column), source="t")
    assert lean.values.dtype == table.values.dtype == np.float32
    assert lean.values.tobytes() == table.values.tobytes()
    np.testing.assert_array_equal(lean.n_imputed, table.n_imputed)
    np.testing.assert_array_equal(lean.n_unknown, table.n_unknown)
    assert lean.unknown_categories == table.unknown_categories and lean.out_of_range == table.out_of_range
    assert any(lean.out_of_range) and lean.n_imputed.sum() > 0  # the rows exercise the flags


def test_featurizer_arrays_apply_declared_missing_values_like_the_table(tiny_bundle):
    assistant = DiagnosisAssistant.load(tiny_bundle)
    fz = assistant.bundle.featurizer
    column = fz.numeric_[0]
    declared = type(fz).from_dict({**fz.to_dict(), "params": {**fz.to_dict()["params"], "missing_values": {column: [0]}}})
    rows = _rows(tiny_bundle)
    rows[0] = {**rows[0], column: 0}
    batch = rows_to_batch(rows, assistant, max_rows=100, source="t")
    lean = declared.transform_arrays(batch.columns)
    table = declared.transform(batch.to_frame(None))
    assert lean.values.tobytes() == table.values.tobytes()
    assert lean.n_imputed[0] == table.n_imputed[0] >= 1


def test_lean_predictions_equal_the_pandas_path_with_explanations(tiny_bundle):
    assistant = DiagnosisAssistant.load(tiny_bundle)
    rows = _rows(tiny_bundle)
    batch = rows_to_batch(rows, assistant, max_rows=100, source="t")
    for explain in (False, True):
        lean = predict_batch(assistant, batch, explain=explain, top_k=4, source="t")
        old = predict_frame(assistant, batch.to_frame(assistant.bundle.schema.id_column), explain=explain, top_k=4, source="t")
        assert lean == old


def _without_scores(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("probabilities", "confidence", "member_sd")} for r in results]


def test_the_served_forward_pass_on_onnx_runtime_gives_the_pytorch_results(tiny_bundle):
    """The service runs the network on ONNX Runtime where it reproduces PyTorch: the same
    predictions, flags and factors, probabilities equal at the precision they are reported to."""
    assistant = DiagnosisAssistant.load(tiny_bundle)
    lean = _Lean(assistant)
    assert lean.forward.runtime == "onnxruntime", lean.forward.reason
    fz = assistant.bundle.featurizer
    frame = get_dataset("heart_disease").load()[list(fz.columns_)]  # what the tiny bundle was trained on
    rows = [{c: None if v != v else (float(v) if c in fz.numeric_ else v) for c, v in rec.items()} for rec in frame.to_dict("records")]
    batch = rows_to_batch(rows, assistant, max_rows=1000, source="t")
    for explain in (False, True):
        served = predict_batch(assistant, batch, explain=explain, top_k=3, source="t", lean=lean)
        reference = predict_batch(assistant, batch, explain=explain, top_k=3, source="t")
        assert _without_scores(served) == _without_scores(reference)
        for a, b in zip(served, reference, strict=True):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=SCORE_TOLERANCE)


def test_a_revoked_token_is_refused_at_once_though_tokens_are_cached(site):
    with site.db.session(write=True) as s:
        token, plain = new_api_token(s, user=s.get(User, site.user_ids["clinician"]), name="cached", days=1)
        token_id = token.id
    headers = {"Authorization": f"Bearer {plain}"}
    for _ in range(3):  # the first look-up refreshes last_used_at; later ones come from the cache
        assert httpx.get(site.base_url + "/api/v1/me", headers=headers).status_code == 200
    cache = site.app.state.ctx.state["_api_tokens"]
    assert cache.get(auth.accounts.digest(plain)) is not None  # it is cached
    with site.db.session(write=True) as s:  # revoked through this process (the account page does the same)
        s.get(ApiToken, token_id).revoked_at = utcnow()
    assert httpx.get(site.base_url + "/api/v1/me", headers=headers).status_code == 401


def test_a_token_revoked_by_another_process_is_refused_once_the_cache_ages(site, monkeypatch):
    with site.db.session(write=True) as s:
        token, plain = new_api_token(s, user=s.get(User, site.user_ids["clinician"]), name="other", days=1)
        token_id = token.id
    headers = {"Authorization": f"Bearer {plain}"}
    cache = site.app.state.ctx.state.get("_api_tokens") or auth.TokenCache()
    monkeypatch.setattr(cache, "ttl_s", 0.3)
    for _ in range(3):
        assert httpx.get(site.base_url + "/api/v1/me", headers=headers).status_code == 200
    # another process (the CLI) writes the database directly: no event reaches this one
    con = sqlite3.connect(site.settings.home / "medassist.db")
    with con:
        con.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"), token_id))
    con.close()
    time.sleep(0.35)  # past the cache's lifetime (not a timing assert: the answer must be 401)
    assert httpx.get(site.base_url + "/api/v1/me", headers=headers).status_code == 401


def test_a_disabled_user_is_refused_at_once(fresh_site):
    site = fresh_site
    api = site.api("researcher")
    assert api.get("/api/v1/me").status_code == 200
    assert api.get("/api/v1/me").status_code == 200
    with site.db.session(write=True) as s:
        s.get(User, site.user_ids["researcher"]).is_active = False
    assert api.get("/api/v1/me").status_code == 401


def test_concurrent_predictions_share_audit_transactions_and_every_one_is_in_the_chain(fresh_site, tiny_bundle):
    site = fresh_site
    url = f"/api/v1/diagnosis/{site.bundle_id}/predict"
    before_entries, before_preds = site.count(AuditEntry), site.count(Prediction)
    row = example_row(tiny_bundle)
    out: dict[int, httpx.Response] = {}

    def client(i: int) -> None:
        with site.api("clinician") as c:
            out[i] = c.post(url, json={"row": {**row, "age": 40 + i}, "explain": False})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in out.values()), [r.text[:200] for r in out.values() if r.status_code != 200]
    audit_ids = [r.json()["audit_id"] for r in out.values()]
    prediction_ids = [r.json()["prediction_id"] for r in out.values()]
    assert len(set(audit_ids)) == len(set(prediction_ids)) == 24
    assert site.count(AuditEntry) == before_entries + 24 and site.count(Prediction) == before_preds + 24
    with site.db.session() as s:
        assert verify_chain(s).ok
        for r in out.values():
            p = s.get(Prediction, r.json()["prediction_id"])
            e = s.get(AuditEntry, r.json()["audit_id"])
            assert p.audit_id == e.id and e.action == "predict" and e.username == "clinician"
            assert e.input_sha256 == p.input_sha256
            assert site.app.state.ctx.cipher.decrypt(p.output_enc)  # the request's own output, encrypted
