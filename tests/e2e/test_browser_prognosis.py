"""In a real browser: a clinician opens a survival model, fills in one patient and sees the risk,
survival at the horizons, and the patient's curve with its band drawn against the cohort's; then
uploads a CSV file and downloads the results. Numbers on the page are the assistant's own;
screenshots are saved in the test's tmp directory."""

from __future__ import annotations

import pandas as pd
import pytest

from medassist.assistants.prognosis import PrognosisAssistant, train_prognosis
from medassist.pipeline.survival import sksurv_case_frame
from medassist.service import create_app
from medassist.settings import Settings
from medassist.testing.server import add_user, running_server

DISCLAIMER = "Decision support, not a medical device."
PASSWORD = "a clinician passphrase 9"


@pytest.fixture(scope="module")
def survival_bundle(tmp_path_factory):
    df = sksurv_case_frame("gbsg2").reset_index(drop=True).iloc[:310]
    df.insert(0, "pid", [f"GB{i:04d}" for i in range(len(df))])
    d = tmp_path_factory.mktemp("prognosis-e2e")
    df.iloc[:300].to_csv(d / "train.csv", index=False)
    df.iloc[300:].drop(columns=["time", "event"]).to_csv(d / "ward.csv", index=False)
    out = d / "bundles" / "gbsg"
    train_prognosis(d / "train.csv", out=out, time="time", event="event", id_column="pid", epochs=2, ensemble=2, progress=False)
    return out, d / "ward.csv"


def test_clinician_sees_a_survival_curve_against_the_cohort_and_downloads_a_file(open_page, sign_in, survival_bundle, tmp_path):
    bundle, ward = survival_bundle
    app = create_app(Settings(home=tmp_path / "home", bundle_dirs=[bundle.parent]))
    add_user(app.state.ctx.db, "clara", "clinician", PASSWORD)
    [info] = app.state.ctx.catalog.list(tasks=("survival",))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with running_server(app) as base:
        page, problems = open_page(accept_downloads=True)
        sign_in(page, base, "clara", PASSWORD)
        page.click("nav >> text=Prognosis")
        page.click(f"a[href='/prognosis/{info.bundle_id}']")
        page.click("text=Fill in training medians")
        page.wait_for_url("**?example=1")
        page.fill("#prognosis-form input[data-column=age]", "71")
        page.click("#prognosis-form button[type=submit]")
        page.wait_for_selector("#prognosis-result #survival-chart")

        # The numbers are the assistant's own for the values in the form.
        assistant = PrognosisAssistant.load(bundle)
        form = page.evaluate("() => Object.fromEntries(new FormData(document.getElementById('prognosis-form')))")
        fz = assistant.model.encoder.featurizer
        row = {c: (float(form[f"c{i}"]) if c in fz.numeric_ else form[f"c{i}"]) for i, c in enumerate(assistant.covariates)}
        direct = assistant.predict(pd.DataFrame([row]))
        assert page.inner_text("#risk") == f"{100 * direct.loc[0, 'risk']:.1f}%"
        for h in ("365", "730", "1826"):
            cell = page.inner_text(f"#horizons tr[data-horizon='{h}'] td.surv")
            assert cell.startswith(f"{100 * direct.loc[0, f'surv_{h}']:.1f}%"), (h, cell)
        # The chart really draws: a curve across the plot, a band around it, the cohort's curve, three horizons.
        box = page.evaluate("() => { const b = document.querySelector('#survival-chart .patient-curve').getBBox(); return [b.width, b.height]; }")
        assert box[0] > 300 and box[1] > 20
        assert page.evaluate("() => document.querySelector('#survival-chart .patient-band').getBBox().height") > 0
        assert page.evaluate("() => document.querySelector('#survival-chart .cohort-curve').getBBox().width") > 300
        assert page.eval_on_selector_all("#survival-chart g.horizon", "els => els.length") == 3
        text = page.inner_text("#prognosis-result")
        assert DISCLAIMER in text and "5 years" in text and "300 patients of the training file" in text
        page.screenshot(path=str(shots / "01-prognosis-result.png"), full_page=True)

        # A CSV file of several patients → a table, and its results as a download.
        page.set_input_files("#prognosis-file-form input[type=file]", str(ward))
        page.click("#prognosis-file-form button[type=submit]")
        page.wait_for_selector("#file-results")
        assert len(page.query_selector_all("#file-results tbody tr")) == 10
        with page.expect_download() as dl:
            page.click("#download-csv")
        table = pd.read_csv(dl.value.path())
        assert list(table["patient"]) == list(pd.read_csv(ward)["pid"]) and "surv_730" in table.columns
        page.screenshot(path=str(shots / "02-prognosis-file.png"), full_page=True)
        assert not problems, problems
        page.context.close()
    app.state.ctx.db.dispose()
