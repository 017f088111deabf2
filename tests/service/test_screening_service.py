"""The screening plugin over real HTTP: a small list is scored now and in input order; a library
runs as a background job (chunked) whose ranked hits equal one direct screen of the whole file,
with paged JSON results, owner-only access, one audit entry, and a results page with depictions."""

from __future__ import annotations

import time

import pytest

from medassist.assistants.screening import ScreeningAssistant
from medassist.data.catalog import get_dataset
from medassist.store.accounts import new_api_token
from medassist.store.models import AuditEntry, Prediction, User
from medassist.testing.assistants import EXAMPLE_SMILES, example_library, example_sdf
from medassist.testing.server import PASSWORD, add_user, csrf_of, sign_in
from medassist.types import SCORE_TOLERANCE

SITE_ASSISTANTS = True
DISCLAIMER = "Decision support, not a medical device."


def _wait(api, job_id: str) -> dict:
    for _ in range(1200):
        p = api.get(f"/api/v1/screening/jobs/{job_id}").json()
        if p["status"] in ("done", "failed"):
            return p
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_small_list_is_scored_in_input_order(site, assistant_bundles, tmp_path):
    r = site.api("clinician").post(f"/api/v1/screening/{site.bundle_ids['screening']}/predict",
                                   json={"smiles": EXAMPLE_SMILES, "filters": ["lipinski", "brenk"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["disclaimer"] == DISCLAIMER and body["bundle"]["id"] == site.bundle_ids["screening"]
    res = body["results"]
    assert [x["input"] for x in res] == EXAMPLE_SMILES
    bad = EXAMPLE_SMILES.index("not_a_smiles")
    assert res[bad]["status"].startswith("skipped: invalid SMILES")
    assert res[-1]["status"] == "ok"  # a repeated structure is scored again in a small list
    lib = tmp_path / "lib.smi"
    lib.write_text("\n".join(EXAMPLE_SMILES) + "\n")
    direct = ScreeningAssistant.load(assistant_bundles["screening"])
    preds, _ = direct.predict(lib)
    for i, x in enumerate(res):
        if x["status"] == "ok":
            assert x["score"] == pytest.approx(preds.loc[i, "score"], abs=1e-5) and x["uncertainty"] is not None
            assert set(x["filters"]) == {"lipinski", "brenk"}


@pytest.fixture(scope="module")
def big_library() -> bytes:
    info = get_dataset("solubility")
    smiles = info.load()[info.extras["smiles_column"]].tolist()[:260]
    return ("\n".join(smiles) + "\n").encode()


def test_a_job_equals_one_direct_screen_of_the_whole_library(site, assistant_bundles, big_library, tmp_path):
    api = site.api("clinician")
    before = (site.count(Prediction), site.count(AuditEntry))
    r = api.post(f"/api/v1/screening/{site.bundle_ids['screening']}/jobs", files={"file": ("lib.smi", big_library, "text/plain")},
                 params={"top": 40, "filters": "lipinski,pains", "rank": "lowest"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["n_total"] == 260 and job["status"] in ("queued", "running")
    done = _wait(api, job["id"])
    assert done["status"] == "done" and done["n_done"] == 260 and done["n_hits"] == 40
    assert (site.count(Prediction), site.count(AuditEntry)) == (before[0] + 1, before[1] + 1)  # recorded once, when done
    lib = tmp_path / "lib.smi"
    lib.write_bytes(big_library)
    direct = ScreeningAssistant.load(assistant_bundles["screening"]).screen(
        lib, top=40, filters=["lipinski", "pains"], rank="lowest", workers=1)
    summary, expected = direct.summary, direct.hits
    got = []
    for page in (1, 2):
        p = api.get(f"/api/v1/screening/jobs/{job['id']}/results", params={"page": page, "per_page": 25}).json()
        assert p["pages"] == 2 and p["disclaimer"] == DISCLAIMER
        got += p["hits"]
    assert [h["rank"] for h in got] == list(range(1, 41))
    assert [h["smiles"] for h in got] == expected["smiles_canonical"].tolist()
    # the job scores 100-molecule chunks, the direct screen the whole library: float32 results a few
    # ULPs apart that may round to neighbours at the CSV's 6 decimals
    assert [h["score"] for h in got] == pytest.approx(expected["score"].tolist(), abs=SCORE_TOLERANCE)
    assert [h["input_row"] for h in got] == expected["input_row"].tolist()
    assert p["summary"]["n_read"] == summary.n_read and p["summary"]["n_scored"] == summary.n_scored
    assert api.get(f"/api/v1/screening/jobs/{job['id']}/results", params={"page": 3, "per_page": 25}).status_code == 404


def test_jobs_are_visible_to_their_owner_only(site):
    api = site.api("clinician")
    r = api.post(f"/api/v1/screening/{site.bundle_ids['screening']}/jobs", files={"file": ("lib.csv", example_library("csv"), "text/csv")})
    job_id = r.json()["id"]
    other = add_user(site.db, "clinician-2", "clinician", PASSWORD)
    with site.db.session(write=True) as s:
        token = new_api_token(s, user=s.get(User, other), name="t", days=1)[1]
    import httpx

    with httpx.Client(base_url=site.base_url, headers={"Authorization": f"Bearer {token}"}) as c2:
        assert c2.get(f"/api/v1/screening/jobs/{job_id}").status_code == 404
        assert c2.get(f"/api/v1/screening/jobs/{job_id}/results").status_code == 404
    assert _wait(api, job_id)["status"] == "done"
    hits = api.get(f"/api/v1/screening/jobs/{job_id}/results").json()["hits"]
    assert all(h["library"]["name"].startswith("mol") for h in hits)
    browser2 = sign_in(site.base_url, "clinician-2")
    assert browser2.get(f"/screening/jobs/{job_id}").status_code == 404


def test_sdf_library_and_the_job_pages(site):
    client = site.browser("clinician")
    bid = site.bundle_ids["screening"]
    page = client.get(f"/screening/{bid}")
    assert page.status_code == 200 and DISCLAIMER in page.text
    r = client.post(f"/screening/{bid}/jobs", files={"file": ("lib.sdf", example_sdf(), "chemical/x-mdl-sdfile")},
                    data={"csrf_token": csrf_of(page.text), "filters": ["lipinski", "veber"], "top": "3"})
    assert r.status_code == 303 and r.headers["location"].startswith("/screening/jobs/j")
    job_id = r.headers["location"].rsplit("/", 1)[1]
    _wait(site.api("clinician"), job_id)
    progress = client.get(f"/screening/jobs/{job_id}/progress", headers={"HX-Request": "true"})
    assert progress.status_code == 200 and 'id="screening-job-result"' in progress.text and "hx-trigger" not in progress.text
    full = client.get(f"/screening/jobs/{job_id}")  # a reload shows the same results
    assert full.text.count('src="data:image/svg+xml;base64,') == 3 and DISCLAIMER in full.text and bid in full.text
    assert "M1" in full.text or "mol1" in full.text  # the SDF's names and properties travel with the hits
    assert job_id in client.get("/screening").text
