"""Resolve ``--data`` to a table: a bundled data set name or a CSV path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medassist.data.catalog import DatasetInfo, get_dataset, is_dataset_name, list_datasets
from medassist.data.dictionary import DataDictionary, dictionary_for
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
    #: What the columns mean (labels, units, codes); ``None``: the bundled data set's, if any.
    dictionary: DataDictionary | None = None

    def data_dictionary(self) -> DataDictionary:
        """This table's dictionary: the one given, else the bundled data set's (or an empty one)."""
        if self.dictionary is not None:
            return self.dictionary
        return dictionary_for(dataset=self.dataset.name) if self.dataset is not None else DataDictionary()


def resolve_table(data: str | Path, *, dictionary: str | Path | None = None) -> tuple[pd.DataFrame, DataSource]:
    """Load ``data``: an existing file path wins; otherwise a bundled data set name.

    The data dictionary is the bundled data set's, overlaid by ``NAME.dictionary.csv|yaml``
    beside a CSV file, overlaid by ``dictionary`` (a file: REDCap or plain CSV, YAML, JSON).

    Raises:
        DataFileNotFoundError: neither a file nor a bundled data set name.
    """
    path = Path(data)
    if path.exists():
        return read_table(path), DataSource(name=str(path), dictionary=dictionary_for(data_path=path, explicit=dictionary))
    if is_dataset_name(str(data)):
        info = get_dataset(str(data))
        return info.load(), DataSource(
            name=info.name, provenance=info.source, licence=info.licence, site_column=info.site_column, dataset=info,
            dictionary=dictionary_for(dataset=info.name, explicit=dictionary),
        )
    names = ", ".join(d.name for d in list_datasets())
    raise DataFileNotFoundError(f"{data}: no such file, and not a bundled data set name (bundled: {names}).")
