"""Reading and standardising molecules: reasons for every skipped row, nothing silently lost."""

import gzip

import pandas as pd
import pytest

from medassist.data.io.molecules import (
    MoleculeStandardizer,
    iter_raw_batches,
    parse_smiles,
    read_molecule_file,
    read_molecule_table,
    summarize_skipped,
)
from medassist.exceptions import DataError, DataFileNotFoundError, EmptyDataError, SchemaError


@pytest.mark.parametrize("text, reason", [
    ("C1CC", "invalid SMILES: unclosed ring"), ("CN(C)(C)(C)C", "valence error"), ("c1cccc1", "kekulization error"),
    ("", "empty"), (None, "empty"), ("xyz", "invalid SMILES"),
])
def test_parse_smiles_gives_the_reason(text, reason):
    mol, why = parse_smiles(text)
    assert mol is None and why.startswith(reason)


def test_standardizer_strips_salts_neutralises_and_canonicalises():
    std = MoleculeStandardizer()
    assert std.standardize_smiles("[Na+].CC(=O)[O-]") == ("CC(=O)O", None)
    assert std.standardize_smiles("C(C)[NH3+].[Cl-]") == ("CCN", None)
    assert std.standardize_smiles("C1=CC=CC=C1") == ("c1ccccc1", None)
    keep = MoleculeStandardizer(largest_fragment=False, neutralize=False)
    assert keep.standardize_smiles("[Na+].CC(=O)[O-]")[0] == "CC(=O)[O-].[Na+]"
    taut = MoleculeStandardizer(canonical_tautomer=True)
    assert taut.standardize_smiles("Oc1ccccn1")[0] == taut.standardize_smiles("O=c1cccc[nH]1")[0]
    assert MoleculeStandardizer.from_dict(std.to_dict()).to_dict() == std.to_dict()


def test_read_table_keeps_good_rows_and_reports_bad_ones_with_row_numbers():
    frame = pd.DataFrame({"smiles": ["CCO", "C1CC", "c1ccccc1O", None, "CC(=O)O.[Na]"], "y": [1, 2, 3, 4, 5]})
    mset = read_molecule_table(frame, source="t.csv")
    assert mset.smiles == ["CCO", "Oc1ccccc1", "CC(=O)O"]
    assert mset.rows.tolist() == [1, 3, 5] and mset.frame["y"].tolist() == [1, 3, 5]
    assert [(s.row, s.category) for s in mset.skipped] == [(2, "invalid SMILES"), (4, "empty")]
    assert summarize_skipped(mset.skipped) == ["1 × invalid SMILES (row 2)", "1 × empty (row 4)"]
    assert frame["smiles"].tolist()[4] == "CC(=O)O.[Na]"  # the caller's table is never changed


def test_smiles_column_is_found_by_name_or_must_be_given():
    with pytest.raises(SchemaError, match="pass --smiles-column"):
        read_molecule_table(pd.DataFrame({"mol": ["CCO"]}), source="x.csv")
    with pytest.raises(SchemaError, match="'nope' not found"):
        read_molecule_table(pd.DataFrame({"SMILES": ["CCO"]}), smiles_column="nope", source="x.csv")
    assert len(read_molecule_table(pd.DataFrame({"Canonical_SMILES": ["CCO"]}), source="x.csv")) == 1


def test_smi_files_with_header_comments_and_names(tmp_path):
    p = tmp_path / "lib.smi"
    p.write_text("smiles id\n# a comment\nCCO ethanol\n\nC1CC broken\nc1ccccc1\n")
    batches = list(iter_raw_batches(p, batch_size=2))
    assert [b.rows for b in batches] == [[1, 2], [3]]
    assert batches[0].texts == ["CCO", "C1CC"] and batches[0].columns == [{"id": "ethanol"}, {"id": "broken"}]
    frame, col, blocks = read_molecule_file(p)
    assert col == "smiles" and blocks is None and frame["smiles"].tolist() == ["CCO", "C1CC", "c1ccccc1"]


def test_sdf_records_bring_names_and_properties(tmp_path):
    from rdkit import Chem

    p = tmp_path / "lib.sdf.gz"
    with gzip.open(p, "wt") as fh:
        w = Chem.SDWriter(fh)
        for i, s in enumerate(["CCO", "c1ccccc1"]):
            m = Chem.MolFromSmiles(s)
            m.SetProp("_Name", f"m{i}")
            m.SetProp("IC50", str(10 * i))
            w.write(m)
        w.close()
        fh.write("garbage\n  not a molfile\nM  END\n$$$$\n")
    frame, col, blocks = read_molecule_file(p)
    assert col is None and len(blocks) == 3
    assert frame.loc[0, "name"] == "m0" and frame.loc[1, "IC50"] == "10"
    mset = read_molecule_table(frame, molblocks=blocks, source=str(p))
    assert mset.smiles == ["CCO", "c1ccccc1"] and [s.row for s in mset.skipped] == [3]


def test_csv_streaming_keeps_ids_as_text(tmp_path):
    p = tmp_path / "lib.csv"
    p.write_text("ID,SMILES,score\n007,CCO,1.5\n1e5,CCN,\n")
    (b,) = list(iter_raw_batches(p))
    assert b.columns == [{"ID": "007", "score": "1.5"}, {"ID": "1e5", "score": ""}]


@pytest.mark.parametrize("name, content, error", [
    ("missing.smi", None, DataFileNotFoundError), ("empty.smi", "", EmptyDataError), ("lib.xyz", "CCO\n", DataError),
])
def test_bad_files_raise_clear_errors(tmp_path, name, content, error):
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    with pytest.raises(error, match=name):
        list(iter_raw_batches(p))
