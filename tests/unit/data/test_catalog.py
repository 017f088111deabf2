import pandas as pd
import pytest

from medassist.data.catalog import get_dataset, list_datasets
from medassist.data.sources import resolve_table
from medassist.exceptions import ConfigError, DataFileNotFoundError


@pytest.mark.parametrize(
    "name, rows, target, classes",
    [
        ("wdbc", 569, "diagnosis", {"malignant", "benign"}),
        ("pima", 532, "type", {"Yes", "No"}),
        ("biopsy", 699, "class", {"malignant", "benign"}),
        ("heart_disease", 920, "disease", {"present", "absent"}),
    ],
)
def test_bundled_datasets_load_offline_with_declared_shape(name, rows, target, classes):
    info = get_dataset(name)
    df = info.load()
    assert len(df) == rows == info.n_rows
    assert set(df[target].dropna().unique()) == classes
    assert info.positive_class in classes
    assert info.licence and info.source


def test_every_entry_has_provenance_and_licence():
    for info in list_datasets():
        d = info.describe()
        assert d["licence"] and d["source"] and d["citation"]
        assert d["target"] or d["task"] == "library", d["name"]  # a screening library has no outcome


def test_heart_disease_target_is_derived_and_grade_removed():
    df = get_dataset("heart_disease").load()
    assert "num" not in df.columns  # the grade is the target; leaving it in would leak
    assert set(df["dataset"].unique()) == {"Cleveland", "Hungary", "Switzerland", "VA Long Beach"}
    assert (df["disease"] == "present").sum() == 509  # num > 0 in the UCI file


def test_biopsy_keeps_repeat_ids_and_missing_values():
    df = get_dataset("biopsy").load()
    assert df["ID"].duplicated().any()
    assert df["bare_nuclei"].isna().sum() == 16


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'wdbc'"):
        get_dataset("wdcb")


def test_resolve_table_prefers_existing_file(tmp_path):
    p = tmp_path / "wdbc"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(p, index=False)
    df, src = resolve_table(p)
    assert list(df.columns) == ["a", "b"] and src.dataset is None
    df, src = resolve_table("pima")
    assert src.dataset is not None and len(df) == 532
    with pytest.raises(DataFileNotFoundError, match="not a bundled data set"):
        resolve_table(tmp_path / "missing.csv")
