"""Clinical words on the pages (labels with units, selects for coded fields, factors with the
patient's value and a direction, missing values named) and CSV downloads of results (the
browser session, the caller's own results only, formula cells neutralised, audited)."""

from __future__ import annotations

import csv
import io
import re

from medassist.store.audit import AuditEntry, decode_detail
from medassist.testing.server import csrf_of, example_csv

SITE_ASSISTANTS = True


def _form_values(html: str) -> dict[str, str]:
    values = dict(re.findall(r'<input type="text"[^>]*name="(c\d+)"[^>]*value="([^"]*)"', html))
    for name, body in re.findall(r'<select name="(c\d+)"[^>]*>(.*?)</select>', html, flags=re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        values[name] = chosen.group(1) if chosen else ""
    return values


def test_heart_form_speaks_clinical_words(site):
    page = site.browser("clinician").get(f"/diagnosis/{site.bundle_id}").text
    assert "Resting blood pressure (mm Hg)" in page and "Maximum heart rate on exercise (beats/min)" in page
    assert ">trestbps<" not in page and ">thalch<" not in page
    exang = re.search(r'<select name="c\d+" data-column="exang">(.*?)</select>', page, flags=re.S)
    assert exang and "yes (angina on exercise)" in exang.group(1)
    assert "site of care — not a clinical factor" in page
    assert "plausible 70–220 mm Hg" in page
    assert "Coronary heart disease (angiography) — neural network (MLP) (small)" in page


def test_result_names_missing_values_and_words_the_factors(site):
    client = site.browser("clinician")
    page = client.get(f"/diagnosis/{site.bundle_id}?example=1").text
    values = _form_values(page)
    chol = re.search(r'name="(c\d+)" data-column="chol"', page).group(1)
    values[chol] = ""
    r = client.post(f"/diagnosis/{site.bundle_id}/predict", data={"csrf_token": csrf_of(page), "explain": "on", **values},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "1 value was missing and imputed: Serum cholesterol" in r.text
    assert re.search(r"(raises|lowers) the probability of present", r.text)
    assert "towards" not in r.text and "away from" not in r.text


def test_diagnosis_upload_results_download_as_csv_with_the_session_cookie(site, tiny_bundle):
    client = site.browser("clinician")
    page = client.get(f"/diagnosis/{site.bundle_id}").text
    data = example_csv(tiny_bundle, n=3).replace(b"P000", b"=HYPERLINK(1)")
    r = client.post(f"/diagnosis/{site.bundle_id}/predict-file", data={"csrf_token": csrf_of(page)},
                    files={"file": ("ward.csv", data, "text/csv")}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    link = re.search(r'href="(/diagnosis/predictions/(\d+)\.csv)"', r.text)
    assert link, r.text[:500]
    n_before = site.count(AuditEntry)
    got = client.get(link.group(1))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "attachment" in got.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert len(rows) == 3 and rows[0]["patient"] == "'=HYPERLINK(1)" and "factor 1 value" in rows[0]
    with site.db.session() as s:
        entries = s.query(AuditEntry).order_by(AuditEntry.id.desc()).limit(1).all()
    assert site.count(AuditEntry) == n_before + 1 and entries[0].action == "download"
    assert decode_detail(entries[0])["assistant"] == "diagnosis"
    # Another user's prediction is not found; a role without the assistants is refused; anonymous signs in.
    assert site.browser("researcher").get(link.group(1)).status_code in (403, 404)
    assert site.browser("auditor").get(link.group(1)).status_code == 403
    assert site.browser(None).get(link.group(1)).status_code in (302, 303, 307)


def test_treatment_page_has_units_and_sensible_numbers(site):
    bundle_id = site.bundle_ids["treatment"]
    client = site.browser("clinician")
    page = client.get(f"/treatment/{bundle_id}?example=1").text
    assert "Lymph nodes with detectable cancer (nodes)" in page
    assert re.search(r'<select name="c\d+" data-column="extent">.*contiguous structures', page, flags=re.S)
    r = client.post(f"/treatment/{bundle_id}/advise", data={"csrf_token": csrf_of(page), **_form_values(page)},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:300]
    assert "average days alive and event-free over the first 5 years (restricted mean)" in r.text
    benefit = re.search(r'id="benefit">(.*?)</span>', r.text, flags=re.S).group(1)
    assert "days" in benefit and not re.search(r"\d\.\d{3}", benefit)
    assert "e+0" not in r.text and "RMST of" not in r.text
    assert "Test AUC" not in r.text


def test_screening_list_downloads_as_csv(site):
    bundle_id = site.bundle_ids["screening"]
    client = site.browser("clinician")
    page = client.get(f"/screening/{bundle_id}").text
    r = client.post(f"/screening/{bundle_id}/predict", data={"csrf_token": csrf_of(page), "molecules": "CCO ethanol\nc1ccccc1O phenol"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "log mol/L" in r.text  # the score's unit
    link = re.search(r'href="(/screening/predictions/\d+\.csv)"', r.text).group(1)
    got = client.get(link)
    assert got.status_code == 200 and [row["name"] for row in csv.DictReader(io.StringIO(got.text))] == ["ethanol", "phenol"]
    assert site.browser("auditor").get(link).status_code == 403
