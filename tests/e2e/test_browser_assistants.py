"""In a real browser: a clinician uses the imaging, treatment and screening assistants — upload an
image and see the probabilities and Grad-CAM, fill in a patient and see the per-arm chart, upload
a library and watch the job finish into a ranked table with structures. The rendered numbers are
checked against the API's; screenshots are saved in the test's tmp directory."""

from __future__ import annotations

import re

import pytest

from medassist.assistants.imaging import ImagingAssistant
from medassist.service import create_app
from medassist.settings import Settings
from medassist.testing.assistants import example_library, example_png
from medassist.testing.server import add_user, running_server

DISCLAIMER = "Decision support, not a medical device."
PASSWORD = "a clinician passphrase 9"


@pytest.fixture
def server(tmp_path, assistant_bundles):
    app = create_app(Settings(home=tmp_path / "home", bundle_dirs=[assistant_bundles["imaging"].parent]))
    add_user(app.state.ctx.db, "clara", "clinician", PASSWORD)
    with running_server(app) as base:
        yield base, app
    app.state.ctx.db.dispose()


def test_clinician_uses_imaging_treatment_and_screening(open_page, sign_in, server, assistant_bundles, tmp_path):
    base, app = server
    ids = {i.task: i.bundle_id for i in app.state.ctx.catalog.list()}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page, problems = open_page()
    sign_in(page, base, "clara", PASSWORD)
    page.wait_for_selector("nav >> text=Imaging")

    # Imaging: upload a picture → calibrated probabilities (as the assistant says) and the Grad-CAM image.
    png = tmp_path / "chest.png"
    png.write_bytes(example_png())
    page.click("nav >> text=Imaging")
    page.click(f"a[href='/imaging/{ids['diagnosis-image']}']")
    page.set_input_files("#imaging-form input[type=file]", str(png))
    page.click("#imaging-form button[type=submit]")
    page.wait_for_selector("#imaging-result #gradcam")
    direct = ImagingAssistant.load(assistant_bundles["imaging"]).predict(png)
    assert page.inner_text("#prediction") == direct["prediction"]
    for cls, p in direct["probabilities"].items():
        assert page.inner_text(f"#probabilities td[data-class='{cls}']") == f"{100 * p:.1f}%"
    assert page.evaluate("document.querySelector('#gradcam').naturalWidth") > 0  # the overlay really loads (CSP allows data:)
    text = page.inner_text("#imaging-result")
    assert DISCLAIMER in text and "synthetic" in text
    page.screenshot(path=str(shots / "01-imaging.png"), full_page=True)

    # Treatment: the training medians, one value changed → recommendation, chart, evidence.
    page.click("nav >> text=Treatment")
    page.click(f"a[href='/treatment/{ids['treatment']}']")
    page.click("text=Fill in training medians")
    page.wait_for_url("**?example=1")
    page.click("#treatment-form button[type=submit]")
    page.wait_for_selector("#treatment-result #outcome-chart")
    arms = page.eval_on_selector_all("#outcome-chart g.arm", "els => els.map(e => e.dataset.arm)")
    assert len(arms) == 3 and page.get_attribute("#recommended", "data-arm-code") in arms
    assert page.inner_text("#recommended") not in arms  # the arm in words ("levamisole + fluorouracil"), not its code
    assert page.eval_on_selector_all("#outcome-chart g.recommended", "els => els.length") == 1
    assert "Evidence" in page.inner_text("#treatment-result") and DISCLAIMER in page.inner_text("#treatment-result")
    page.screenshot(path=str(shots / "02-treatment.png"), full_page=True)

    # Screening: upload a library → the job page polls (htmx) until the ranked table appears.
    lib = tmp_path / "library.smi"
    lib.write_bytes(example_library())
    page.click("nav >> text=Screening")
    page.click(f"a[href='/screening/{ids['screening']}']")
    page.set_input_files("#screening-job-form input[type=file]", str(lib))
    page.click("#screening-job-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/screening/jobs/j[0-9a-f]{20}$"))
    page.wait_for_selector("#screening-job-result #hits", timeout=60_000)
    rows = page.eval_on_selector_all("#hits tbody tr", "els => els.length")
    assert rows == 7  # 9 lines: one invalid SMILES, one repeated structure
    assert page.eval_on_selector_all("#hits td.structure img", "els => els.filter(i => i.naturalWidth > 0).length") == rows
    job_id = page.url.rsplit("/", 1)[1]
    api_top = app.state.ctx.state["screening"]["jobs"].jobs[job_id].hits[0]
    assert page.inner_text("#hits tbody tr:first-child code.smiles") == api_top["smiles"]
    assert DISCLAIMER in page.inner_text("#screening-job-result")
    page.screenshot(path=str(shots / "03-screening.png"), full_page=True)
    page.reload()  # results survive a reload
    page.wait_for_selector("#screening-job-result #hits")
    assert not problems, problems
    page.context.close()
