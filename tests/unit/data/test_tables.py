import pandas as pd
import pytest

from medassist.data.io.tables import read_table, require_columns, write_table
from medassist.exceptions import DataError, DataFileNotFoundError, EmptyDataError, SchemaError


def test_missing_tokens_become_nan_and_values_are_untouched(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("age,bp,sex\n50,?,F\nNA,120.5,\n61,130,M\n")
    df = read_table(p)
    assert df["bp"].isna().tolist() == [True, False, False]
    assert df["age"].isna().tolist() == [False, True, False]
    assert df.loc[1, "bp"] == 120.5 and df.loc[0, "sex"] == "F"


def test_semicolon_and_tab_separated(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a;b\n1;2\n3;4\n")
    assert list(read_table(p).columns) == ["a", "b"]
    q = tmp_path / "t.tsv"
    q.write_text("a\tb\n1\t2\n")
    assert read_table(q).shape == (1, 2)


@pytest.mark.parametrize(
    "content, error, match",
    [
        (None, DataFileNotFoundError, "file not found"),
        ("", EmptyDataError, "empty"),
        ("a,b\n", EmptyDataError, "no data rows"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, content, error, match):
    p = tmp_path / "x.csv"
    if content is not None:
        p.write_text(content)
    with pytest.raises(error, match=match) as ei:
        read_table(p)
    assert "x.csv" in str(ei.value)


def test_binary_file_is_refused(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"\xff\xfe\x00\x81garbage\x00\x9f")
    with pytest.raises(DataError):
        read_table(p)


def test_require_columns_lists_missing_and_present():
    df = pd.DataFrame({"a": [1], "b": [2]})
    with pytest.raises(SchemaError, match=r"'c' not found. The table has: a, b"):
        require_columns(df, ["a", "c"], source="f.csv")


def test_write_table_is_atomic_and_leaves_no_temp(tmp_path):
    out = tmp_path / "sub" / "p.csv"
    write_table(pd.DataFrame({"x": [1, 2]}), out)
    assert out.read_text().splitlines() == ["x", "1", "2"]
    assert [p.name for p in out.parent.iterdir()] == ["p.csv"]
