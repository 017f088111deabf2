"""The one exception tree of medassist.

Every error subclasses the builtin it refines, so an ordinary ``except ValueError`` still works::

    MedassistError
    ├── ConfigError(ValueError)          a parameter or setting with a wrong type or value
    ├── DataError(ValueError)            input data that cannot be used as it is
    │   ├── DataFileNotFoundError(FileNotFoundError)
    │   ├── EmptyDataError               a file or table with no rows
    │   └── SchemaError(KeyError)        columns missing or different from the expected ones
    ├── NotFittedError(RuntimeError)     a featurizer or model used before ``fit``
    ├── BundleError(RuntimeError)        a model bundle that is missing, incomplete or corrupt
    └── TrainingError(RuntimeError)      training could not produce a usable model

The CLI prints ``str(error)`` as one line; messages therefore name the file, column or row and
say what was expected.
"""

from __future__ import annotations


class MedassistError(Exception):
    """Base class of every error medassist raises on purpose."""


class ConfigError(MedassistError, ValueError):
    """A parameter or setting has the wrong type or value."""


class DataError(MedassistError, ValueError):
    """Input data cannot be used as it is."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """An input file or directory does not exist."""


class EmptyDataError(DataError):
    """An input file or table holds no rows."""


class SchemaError(DataError, KeyError):
    """Columns are missing or differ from those a model or task expects."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class NotFittedError(MedassistError, RuntimeError):
    """A featurizer or model was used before it was fitted."""


class BundleError(MedassistError, RuntimeError):
    """A model bundle is missing, incomplete or corrupt."""


class TrainingError(MedassistError, RuntimeError):
    """Training could not produce a usable model."""
