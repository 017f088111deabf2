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


def test_bytes_and_paths_read_the_same_and_the_delimiter_is_never_guessed_from_spaces(tmp_path):
    import io

    data = b"mean radius,mean texture\n17.99,10.38\n20.57,17.77\n"
    p = tmp_path / "w.csv"
    p.write_bytes(data)
    assert read_table(data, name="w.csv").equals(read_table(p))
    assert read_table(io.BytesIO(data), name="w.csv").equals(read_table(p))
    one = read_table(b"mean radius\n17.99\n", name="r.csv")
    assert list(one.columns) == ["mean radius"] and one.iloc[0, 0] == 17.99
    assert list(read_table(b"a;b\n1;2\n", name="s.csv").columns) == ["a", "b"]
    assert read_table(b"a\tb\n1\t2\n", name="t.tsv").shape == (1, 2)


@pytest.mark.parametrize("data, error, match", [
    ("😀".encode(), EmptyDataError, "up.csv: the header is there but there are no data rows"),
    (b"", EmptyDataError, "up.csv: the file is empty"),
    (b"a,b\n1,2,3,4\n", DataError, "up.csv: some rows have more values than the header has columns"),
    (b"a,b\n1,2\n3,4\n5,6\n", DataError, "up.csv: more than 2 rows; at most 2 are accepted"),
    (b"a, a\n1,2\n", DataError, "up.csv: duplicate column names"),
    (b'a,b\n"1,2\n', DataError, "up.csv: not a well-formed CSV table"),
])
def test_bad_bytes_are_one_line_errors_naming_the_upload(data, error, match):
    with pytest.raises(error, match=match) as e:
        read_table(data, name="up.csv", max_rows=2)
    assert "\n" not in str(e.value)
