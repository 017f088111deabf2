"""In a real browser: sign in with a one-time password, change it, use the diagnosis form and a
CSV upload, check the rendered probabilities against the assistant, then read the audit log as
an auditor. Screenshots are saved in the test's tmp directory."""

from __future__ import annotations

import pandas as pd
import pytest

from medassist.assistants.diagnosis import DiagnosisAssistant
from medassist.service import create_app
from medassist.settings import Settings
from medassist.testing.server import add_user, example_csv, running_server

DISCLAIMER = "Decision support, not a medical device."


@pytest.fixture
def server(tmp_path, tiny_bundle):
    app = create_app(Settings(home=tmp_path / "home", bundle_dirs=[tiny_bundle.parent]))
    add_user(app.state.ctx.db, "clara", "clinician", "one-time-pass-123", must_change_password=True)
    add_user(app.state.ctx.db, "audrey", "auditor", "auditor password 77")
    with running_server(app) as base:
        yield base, app
    app.state.ctx.db.dispose()


def test_clinician_and_auditor_in_a_browser(open_page, sign_in, server, tiny_bundle, tmp_path):
    base, app = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page, problems = open_page()

    # Sign in with the one-time password; the account page comes first.
    sign_in(page, base, "clara", "one-time-pass-123")
    page.wait_for_url("**/account?first=1")
    assert "one-time password" in page.inner_text("main")
    page.fill("input[name=current]", "one-time-pass-123")
    page.fill("input[name=new]", "a fresh ward passphrase")
    page.fill("input[name=confirm]", "a fresh ward passphrase")
    page.click("form[action='/account/password'] button")
    page.wait_for_selector("text=Your password was changed.")
    page.screenshot(path=str(shots / "01-account.png"), full_page=True)

    # Diagnosis: choose the bundle, fill in the training medians, set two values, predict.
    page.click("nav >> text=Diagnosis")
    bundle_id = app.state.ctx.catalog.list()[0].bundle_id
    page.click(f"a[href='/diagnosis/{bundle_id}']")
    page.click("text=Fill in training medians")
    page.wait_for_url(f"**/diagnosis/{bundle_id}?example=1")
    fields = {page.get_attribute(f"#diagnosis-form label:nth-of-type({i + 1}) [data-column]", "data-column"): i for i in range(14)}
    # Clinical words, not column codes: labels with units, yes/no fields as selects, the site marked.
    form_text = page.inner_text("#diagnosis-form")
    assert "Resting blood pressure (mm Hg)" in form_text and "trestbps" not in form_text
    assert page.locator(f"select[name=c{fields['exang']}] option", has_text="yes (angina on exercise)").count() == 1
    assert "site of care — not a clinical factor" in form_text
    page.fill(f"input[name=c{fields['age']}]", "sixty-seven")  # a typo: refused with a message, nothing recorded
    page.click("#diagnosis-form button[type=submit]")
    page.wait_for_selector("#result .alert.error")
    assert "Age (years): expected a number" in page.inner_text("#result")
    page.fill(f"input[name=c{fields['age']}]", "67")
    page.select_option(f"select[name=c{fields['sex']}]", "Male")
    page.select_option(f"select[name=c{fields['cp']}]", "asymptomatic")
    url_before = page.url
    page.click("#diagnosis-form button[type=submit]")
    page.wait_for_selector("#result #diagnosis-result")
    assert page.url == url_before  # htmx swapped the result in; no page load
    result = page.inner_text("#diagnosis-result")
    assert DISCLAIMER in result and bundle_id in result
    shown = {c.get_attribute("data-class"): float(c.inner_text().rstrip("%")) / 100 for c in page.query_selector_all("#probabilities td.num")}
    assert set(shown) == {"absent", "present"} and sum(shown.values()) == pytest.approx(1, abs=0.002)
    # The same row through the assistant directly gives the numbers on the page.
    form_values = page.evaluate("() => Object.fromEntries(new FormData(document.getElementById('diagnosis-form')))")
    state_cols = list(fields)
    row = {c: (form_values[f"c{i}"] or None) for c, i in fields.items()}
    for c in ("age", "trestbps", "chol", "fbs", "thalch", "exang", "oldpeak", "ca"):
        row[c] = None if row[c] is None else float(row[c])
    direct = DiagnosisAssistant.load(tiny_bundle).predict(pd.DataFrame([row])[state_cols], explain=False)
    for cls, p in shown.items():
        assert p == pytest.approx(direct.loc[0, f"prob_{cls}"], abs=0.0006)
    assert page.inner_text("#prediction") == direct.loc[0, "prediction"]
    assert len(page.query_selector_all("#factors tbody tr")) == 5
    page.screenshot(path=str(shots / "02-diagnosis-result.png"), full_page=True)

    # A CSV file of several patients.
    csv = tmp_path / "ward.csv"
    csv.write_bytes(example_csv(tiny_bundle, n=5))
    page.set_input_files("input[type=file]", str(csv))
    page.click("text=Predict file")
    page.wait_for_selector("#file-results")
    assert len(page.query_selector_all("#file-results tbody tr")) == 5
    assert DISCLAIMER in page.inner_text("#file-results")
    page.screenshot(path=str(shots / "03-file-results.png"), full_page=True)

    # The model card page.
    page.goto(f"{base}/models/{bundle_id}")
    assert "Held-out test performance" in page.inner_text("main")
    page.click("header button:has-text('Sign out')")
    page.wait_for_url("**/login")

    # The auditor sees both predictions and a verified chain; no patient values.
    sign_in(page, base, "audrey", "auditor password 77")
    page.click("nav >> text=Audit log")
    assert page.locator("table.audit td", has_text="predict").count() == 2
    assert bundle_id in page.inner_text("table.audit")
    page.click("text=Verify the hash chain")
    assert "audit log intact" in page.inner_text("#chain-status")
    assert "P000" not in page.content()
    page.screenshot(path=str(shots / "04-audit.png"), full_page=True)
    assert not [p for p in problems if "422" not in p], problems  # no CSP violations or script errors (the typo's 422 aside)
    page.context.close()
    print(f"screenshots: {shots}")
