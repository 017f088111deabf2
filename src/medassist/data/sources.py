"""Resolve ``--data`` to a table: a bundled data set name or a CSV path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medassist.data.catalog import DatasetInfo, get_dataset, is_dataset_name, list_datasets
from medassist.data.io.tables import read_table
from medassist.exceptions import DataFileNotFoundError


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where a table came from, for the model card and the bundle."""

    name: str
    provenance: str = "user-supplied file"
    licence: str = "unknown (user data)"
    site_column: str | None = None
    dataset: DatasetInfo | None = None


def resolve_table(data: str | Path) -> tuple[pd.DataFrame, DataSource]:
    """Load ``data``: an existing file path wins; otherwise a bundled data set name.

    Raises:
        DataFileNotFoundError: neither a file nor a bundled data set name.
    """
    path = Path(data)
    if path.exists():
        return read_table(path), DataSource(name=str(path))
    if is_dataset_name(str(data)):
        info = get_dataset(str(data))
        return info.load(), DataSource(
            name=info.name, provenance=info.source, licence=info.licence, site_column=info.site_column, dataset=info
        )
    names = ", ".join(d.name for d in list_datasets())
    raise DataFileNotFoundError(f"{data}: no such file, and not a bundled data set name (bundled: {names}).")
