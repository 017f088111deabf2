"""Case analysis over a case frame: the filter language refuses code, similar cases come with
reasons, plots are real PNGs (Kaplan-Meier, log-rank and Cox numbers: tests/unit/evaluation/test_survival.py)."""

import numpy as np
import pandas as pd
import pytest

from medassist.assistants.case_query import filter_mask, parse_filter
from medassist.assistants.cases import CaseAnalysis
from medassist.evaluation.survival import harrell_c
from medassist.exceptions import ConfigError, DataError, SchemaError
from medassist.pipeline.survival import sksurv_case_frame
from medassist.training import TrainConfig

PNG = b"\x89PNG\r\n\x1a\n"
CODES = ["I21.4", "I10", "E11.9", "I50.9", "N18.3", "J44.9"]


@pytest.fixture(scope="module")
def frame():
    df = sksurv_case_frame("whas500")
    rng = np.random.default_rng(0)
    df["conditions"] = [";".join(sorted(set(rng.choice(CODES, rng.integers(0, 4))))) for _ in range(len(df))]
    df["medications"] = [";".join(sorted(set(rng.choice(["aspirin", "metoprolol", "statin"], rng.integers(0, 3))))) for _ in range(len(df))]
    # a near twin of case 17: same conditions, same categories, labs within a few percent
    twin = df.loc[["whas500-17"]].copy()
    twin.index = pd.Index(["twin-of-17"], name="case_id")
    for c in ("age", "bmi", "diasbp", "sysbp", "hr"):
        twin[c] = twin[c] * 1.01
    twin["conditions"] = "E11.9;I21.4;I50.9"
    df.loc["whas500-17", "conditions"] = "E11.9;I21.4;I50.9"
    df.loc[df.index[5], "time"] = np.nan  # one case without an outcome
    return pd.concat([df, twin])


@pytest.fixture(scope="module")
def analysis(frame):
    return CaseAnalysis.fit(frame, n_members=2, train=TrainConfig(epochs=20, batch_size=32, lr=2e-3, patience=10), epochs=10)


@pytest.mark.parametrize("bad", [
    '__import__("os").system("touch /tmp/pwned")',
    "age > 60; import os",
    "age > 60 or exec('1')",
    "(lambda: 1)()",
    "age.__class__ > 1",
    "age > @x",
    "age > 60 and",
    "",
])
def test_filter_rejects_code_and_malformed_expressions(frame, bad):
    with pytest.raises((ConfigError, SchemaError)):
        filter_mask(frame, bad) if bad else parse_filter(bad, list(frame.columns))


def test_filter_selects_the_right_rows_and_names_valid_columns(frame):
    mask = filter_mask(frame, 'age > 60 and sex == "F" and not (chf in (1))')
    expected = (frame["age"] > 60) & (frame["sex"] == "F") & ~(pd.to_numeric(frame["chf"]) == 1)
    assert mask.tolist() == expected.tolist()
    assert filter_mask(frame, 'conditions contains "I21"').sum() == frame["conditions"].str.contains("I21").sum()
    assert filter_mask(frame, "`bmi` >= 30 or age < 40").sum() == ((frame["bmi"] >= 30) | (frame["age"] < 40)).sum()
    with pytest.raises(SchemaError, match="did you mean 'age'.*Valid: time, event"):
        filter_mask(frame, "agee > 3")
    with pytest.raises(ConfigError, match="numeric column"):
        filter_mask(frame, 'sex > 3')


def test_similar_returns_the_near_twin_first_with_reasons(analysis):
    res = analysis.similar("whas500-17", k=5)
    assert res["k"] == 5 and len(res["neighbours"]) == 5
    first = res["neighbours"][0]
    assert first["case_id"] == "twin-of-17"
    assert "whas500-17" not in [n["case_id"] for n in res["neighbours"]]
    assert first["reasons"]["shared_conditions"] == ["E11.9", "I21.4", "I50.9"]
    closest = first["reasons"]["closest_values"]
    assert closest and all(v["difference_in_sd"] < 0.2 for v in closest)
    assert {"column": "sex", "value": "F"} in first["reasons"]["same_category"]
    d = [n["distance"] for n in res["neighbours"]]
    assert d == sorted(d)
    aware = analysis.similar("whas500-17", k=3, outcome_aware=True)
    assert aware["embedding"].startswith("hazard") and len(aware["neighbours"]) == 3
    with pytest.raises(DataError, match="No case 'nope'"):
        analysis.similar("nope")


def test_cohort_by_group_with_plots(analysis, tmp_path):
    res = analysis.cohort('age > 60', by="sex", out_dir=tmp_path)
    assert res["n"] == int((analysis.frame.dropna(subset=["time"])["age"] > 60).sum())
    assert [g["label"] for g in res["groups"]] == ["F", "M"] and 0 < res["logrank"]["p_value"] < 1
    assert res["hazard_ratios"][0]["covariate"] == "sex=F"
    for path in res["plots"].values():
        assert open(path, "rb").read(8) == PNG
    numeric = analysis.cohort(None, by="age")
    assert any("median" in n for n in numeric["notes"]) and numeric["logrank"]["p_value"] < 1e-6
    with pytest.raises(SchemaError, match="Valid:"):
        analysis.cohort(None, by="nope")
    with pytest.raises(DataError, match="selects no cases"):
        analysis.cohort("age > 500")


def test_factors_and_patient_risk(analysis, tmp_path):
    res = analysis.factors(top=5, out_dir=tmp_path)
    hr = {h["covariate"]: h for h in res["hazard_ratios"]}
    assert hr["age"]["hr"] > 1 and hr["age"]["p"] < 0.01
    names = [f["column"] for f in res["attributions"]["factors"]]
    assert len(names) == 5 and "age" in names
    assert open(res["plots"]["forest"], "rb").read(8) == PNG
    risk = analysis.patient_risk("whas500-17", top=3, out_dir=tmp_path)
    s = np.array(risk["curve"]["survival"])
    assert s[0] == pytest.approx(1.0) and np.all(np.diff(s) <= 1e-6)
    assert len(risk["top_factors"]) == 3 and open(risk["plots"]["risk"], "rb").read(8) == PNG
    old, young = analysis.frame["age"].idxmax(), analysis.frame["age"].idxmin()
    assert analysis.patient_risk(old)["restricted_mean_days"] < analysis.patient_risk(young)["restricted_mean_days"]
    x = analysis.model.features(analysis.frame.dropna(subset=["time"]))
    df = analysis.frame.dropna(subset=["time"])
    assert harrell_c(analysis.model.risk(x), df["time"], df["event"]) > 0.7  # training-data fit, a sanity check
