"""Survival statistics of case analysis: Kaplan-Meier, log-rank and Cox numbers equal lifelines'."""

import numpy as np
import pytest

from medassist.evaluation.survival import COX_PENALIZER, cox_design, cox_hazard_ratios, kaplan_meier_groups, logrank
from medassist.exceptions import DataError
from medassist.pipeline.survival import sksurv_case_frame


@pytest.fixture(scope="module")
def frame():
    return sksurv_case_frame("whas500")


def test_kaplan_meier_and_logrank_equal_lifelines(frame):
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    df = frame.dropna(subset=["time"])
    km = kaplan_meier_groups(df["time"], df["event"], df["sex"])
    assert [c.label for c in km.curves] == ["F", "M"]
    for c in km.curves:
        g = df[df["sex"] == c.label]
        ref = KaplanMeierFitter().fit(g["time"], g["event"])
        assert np.allclose(c.survival, ref.survival_function_.iloc[:, 0].to_numpy())
        assert np.allclose(c.lower, ref.confidence_interval_.iloc[:, 0].to_numpy())
        assert c.median == ref.median_survival_time_ and c.n == len(g) and c.events == int(g["event"].sum())
        assert c.at_risk(0.0) == len(g)
    f, m = df[df["sex"] == "F"], df[df["sex"] == "M"]
    ref = logrank_test(f["time"], m["time"], f["event"], m["event"])
    assert km.logrank["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
    assert km.logrank["statistic"] == pytest.approx(ref.test_statistic, rel=1e-9)
    with pytest.raises(DataError, match="two groups"):
        logrank(f["time"], f["event"], f["sex"])


def test_cox_hazard_ratios_equal_lifelines_with_the_stated_penalizer(frame):
    from lifelines import CoxPHFitter

    df = frame.dropna(subset=["time"]).reset_index(drop=True)
    design, notes = cox_design(df, ["age", "sex", "chf"])
    assert "sex=F" in design.columns and "reference level 'M'" in " ".join(notes)
    hr = cox_hazard_ratios(design, df["time"], df["event"])
    ref = CoxPHFitter(penalizer=COX_PENALIZER).fit(design.assign(t=df["time"], e=df["event"]), "t", "e")
    assert hr.loc["age", "hr"] == pytest.approx(float(np.exp(ref.params_["age"])), rel=1e-6)
    assert hr.loc["age", "hr"] > 1 and hr.loc["age", "ci_low"] < hr.loc["age", "hr"] < hr.loc["age", "ci_high"]
