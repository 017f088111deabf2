"""Cells a spreadsheet would run as formulas (OWASP CSV injection: a text starting with ``=``,
``+``, ``-``, ``@``, tab or CR) reach no CSV medassist writes unneutralised: patient ids through
``predict`` and ``advise``, library names through ``screen``; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from medassist.data.catalog import get_dataset
from medassist.data.io.tables import neutralize_cell, restore_formulas, table_to_csv, write_table

IDS = ["=1+2", "+SUM(A1)", "-2+3+cmd|' /C calc'!A0", '@HYPERLINK("http://x")', "-1.5", "MRN-7"]
SAFE = ["'=1+2", "'+SUM(A1)", "'-2+3+cmd|' /C calc'!A0", '\'@HYPERLINK("http://x")', "-1.5", "MRN-7"]


def _cells(path: Path, column: str) -> list[str]:
    with path.open(newline="") as fh:
        return [row[column] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    from medassist.testing.assistants import build_screening_bundle, build_treatment_bundle
    from medassist.testing.server import shared_tiny_bundle

    root = tmp_path_factory.getbasetemp() / "shared-assistant-bundles"
    out = {"diagnosis": shared_tiny_bundle(tmp_path_factory.getbasetemp())}
    for name, build in (("treatment", build_treatment_bundle), ("screening", build_screening_bundle)):
        if not (root / name / "bundle.json").is_file():
            build(root / name)
        out[name] = root / name
    return out


def test_predict_neutralises_patient_ids_and_keeps_numbers_numeric(bundles, cli, tmp_path):
    rows = get_dataset("heart_disease").load().head(len(IDS)).assign(id=IDS)
    rows.to_csv(tmp_path / "patients.csv", index=False)
    proc = cli("predict", bundles["diagnosis"], "--data", tmp_path / "patients.csv", "--out", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert _cells(tmp_path / "p.csv", "id") == SAFE
    out = pd.read_csv(tmp_path / "p.csv")
    assert pd.api.types.is_float_dtype(out["prob_present"]) and pd.api.types.is_float_dtype(out["factor_1_weight"])


def test_advise_neutralises_patient_ids_and_keeps_negative_numbers(bundles, cli, tmp_path):
    rows = get_dataset("colon").load().head(len(IDS)).assign(id=IDS)
    rows.to_csv(tmp_path / "patients.csv", index=False)
    proc = cli("advise", bundles["treatment"], "--data", tmp_path / "patients.csv", "--out", tmp_path / "a.csv")
    assert proc.returncode == 0, proc.stderr
    assert _cells(tmp_path / "a.csv", "id") == SAFE
    out = pd.read_csv(tmp_path / "a.csv")
    lows = [c for c in out.columns if c.startswith("diff_lo_")]
    assert lows and all(pd.api.types.is_float_dtype(out[c]) for c in lows)
    assert any((out[c] < 0).any() for c in lows)  # negative floats written as plain numbers, unquoted


def test_screen_neutralises_library_names(bundles, cli, tmp_path):
    smiles = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "CCCC", "CCOC"]
    names = ["=1+2", "+x", "-x", "@x", "-1.5", "ok"]
    (tmp_path / "lib.smi").write_text("".join(f"{s} {n}\n" for s, n in zip(smiles, names)))
    proc = cli("screen", bundles["screening"], "--library", tmp_path / "lib.smi", "--out", tmp_path / "hits.csv", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert sorted(_cells(tmp_path / "hits.csv", "name")) == sorted(["'=1+2", "'+x", "'-x", "'@x", "-1.5", "ok"])
    assert pd.api.types.is_float_dtype(pd.read_csv(tmp_path / "hits.csv")["score"])


def test_the_one_writer_neutralises_headers_tab_and_cr_and_round_trips(tmp_path):
    df = pd.DataFrame({"=h": ["\tx", "\rx", "a\r=cmd", "'=already", None], "v": [-1.5, 2.0, -3.0, 0.0, float("nan")],
                       "c": pd.Categorical(["@a", "b", "@a", "b", "b"])})
    text = table_to_csv(df)
    assert text.startswith("'=h,v,c")
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back["'=h"].tolist() == ["'\tx", "'\rx", "a\r=cmd", "'=already", ""]  # CR inside a cell is quoted
    assert back["v"].tolist()[:3] == ["-1.5", "2.0", "-3.0"] and back["c"].tolist()[0] == "'@a"
    restored = restore_formulas(back)
    assert list(restored.columns) == ["=h", "v", "c"] and restored["=h"].tolist()[:3] == ["\tx", "\rx", "a\r=cmd"]
    assert neutralize_cell(neutralize_cell("=x")) == "'=x"  # idempotent: a pre-neutralised cell is not doubled
    assert pd.read_csv(write_table(df, tmp_path / "o.csv"))["v"].dtype == float
