"""The screening assistant: "which molecules in this library are the best candidates for this
property, and which should be filtered out?" Train a property model on measured molecules, then
predict, explain, evaluate and screen libraries with its bundle.

Example:
    >>> outcome = train_screening_model("freesolv", out=Path("models/freesolv"))
    >>> assistant = ScreeningAssistant.load("models/freesolv")
    >>> assistant.screen("library.smi", top=100, filters=["lipinski", "pains"]).write(Path("hits.csv"))
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from rich.console import Console

from medassist.data.catalog import get_dataset, is_dataset_name, list_datasets
from medassist.data.io.molecules import Skipped, file_kind, read_molecule_file
from medassist.data.sources import DataSource
from medassist.exceptions import ConfigError, DataFileNotFoundError
from medassist.options import ModelSize, look_up_option
from medassist.pipeline.molecules import ScreeningOutcome, ScreeningSpec, evaluate_frame, predict_frame, train_screening
from medassist.registry.bundle import ModelBundle, load_bundle
from medassist.training import Monitor, TrainConfig

if TYPE_CHECKING:
    from medassist.pipeline.screen import ScreenChunk, ScreenResult

#: ``--model`` names: a network family, optionally with RDKit descriptors concatenated.
MODEL_CHOICES = {
    "dmpnn": ("dmpnn", "fast"), "dmpnn+rdkit": ("dmpnn", "fast"), "dmpnn+rdkit-all": ("dmpnn", "all"), "dmpnn-only": ("dmpnn", None),
    "fpmlp": ("fpmlp", None), "fpmlp+rdkit": ("fpmlp", "fast"), "fpmlp+rdkit-all": ("fpmlp", "all"),
}
DEFAULT_MODEL = "dmpnn"
#: Ensemble members when the user does not say (``--ensemble 0``): three, so that every
#: prediction has an uncertainty (``--ensemble 1`` trains one model, three times faster).
DEFAULT_ENSEMBLE = 3
#: The model size when the user does not say.
DEFAULT_SIZE = ModelSize.SMALL


#: Why ``--dp-epsilon`` is refused. The networks could train with DP-SGD, but a screening bundle
#: ships its applicability domain: the Morgan fingerprint of every training molecule, verbatim,
#: together with the target scaling (training mean/std) and the descriptor featurizer's training
#: medians, means and spreads. An ε on the card would not cover any of that.
DP_REFUSAL = (
    "--dp-epsilon is not supported for task 'screening': the bundle keeps every training molecule's fingerprint for its "
    "applicability domain, and the target and descriptor scaling, without privacy noise, so no ε would cover it; train "
    "without it (measured molecules are rarely patient data), or use --task diagnosis --dp-epsilon on tabular data."
)


@dataclass(frozen=True, kw_only=True)
class ScreeningTrainOptions:
    """What ``medassist train --task screening`` accepts; any other train option is refused by name
    (``--dp-epsilon`` and ``--class-weight`` with their reasons)."""

    target: str | None = None
    smiles_column: str | None = None
    model: str | None = None
    size: ModelSize = DEFAULT_SIZE
    seed: int = 0
    epochs: int | None = None
    ensemble: int = 0
    id_column: str | None = None
    positive_class: str | None = None

    REFUSED: ClassVar[dict[str, str]] = {
        "dp_epsilon": DP_REFUSAL,
        "class_weight": "--class-weight is not used by screening models (the loss masks missing labels; classes are not reweighted).",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))


def default_train_config(model: str, *, seed: int = 0, epochs: int | None = None, classification: bool = False) -> TrainConfig:
    """Training defaults per family (also used by benchmarks/screening.py)."""
    monitor = Monitor.VAL_METRIC if classification else Monitor.VAL_LOSS
    if model == "fpmlp":
        return TrainConfig(epochs=epochs or 60, batch_size=64, lr=1e-3, weight_decay=1e-4, patience=15, seed=seed, monitor=monitor)
    return TrainConfig(epochs=epochs or 50, batch_size=64, lr=1e-3, weight_decay=0.0, patience=15, warmup_fraction=0.04,
                       seed=seed, monitor=monitor)


def parse_model(name: str | None) -> tuple[str, str | None]:
    key = (name or DEFAULT_MODEL).strip().lower()
    if key not in MODEL_CHOICES:
        from medassist.options import unknown_name_error

        raise unknown_name_error(name, list(MODEL_CHOICES), kind="screening model")
    return MODEL_CHOICES[key]


def load_molecules(data: str | Path, *, smiles_column: str | None = None) -> tuple[pd.DataFrame, DataSource, str | None, list[str] | None]:
    """A molecule table from a bundled data set name or a .csv/.tsv/.smi/.sdf file.

    Returns ``(frame, source, smiles_column, molblocks)``; for an SDF the molecules are the
    connection tables in ``molblocks`` and ``smiles_column`` is None.
    """
    path = Path(data)
    if path.exists():
        frame, col, blocks = read_molecule_file(path, smiles_column=smiles_column)
        return frame, DataSource(name=str(path)), col, blocks
    if is_dataset_name(str(data)):
        info = get_dataset(str(data))
        frame = info.load()
        named = info.extras.get("smiles_column")
        col = smiles_column or (named if isinstance(named, str) else None)
        return frame, DataSource(name=info.name, provenance=info.source, licence=info.licence, dataset=info), col, None
    names = ", ".join(d.name for d in list_datasets())
    raise DataFileNotFoundError(f"{data}: no such file, and not a bundled data set name (bundled: {names}).")


def train_screening_model(
    data: str | Path, *, out: Path, target: str | None = None, smiles_column: str | None = None, model: str | None = None,
    size: ModelSize | str = DEFAULT_SIZE, seed: int = 0, epochs: int | None = None, ensemble: int = 0, split: str = "random",
    id_column: str | None = None, positive_class: str | None = None, overwrite: bool = False, progress: bool = True,
    console: Console | None = None, n_boot: int = 1000,
) -> ScreeningOutcome:
    """Train a molecular property model on a file or bundled set and write a screening bundle.

    ``target`` may name several columns separated by commas (multi-task; missing values masked).
    """
    frame, source, col, blocks = load_molecules(data, smiles_column=smiles_column)
    info = source.dataset
    if info is not None:
        if info.extras.get("library"):
            raise ConfigError(f"'{info.name}' is a screening library without measured values; screen it with 'medassist screen', do not train on it.")
        target = target or info.target
        id_column = id_column or info.id_column
        positive_class = positive_class or info.positive_class
    if not target:
        raise ConfigError(f"{source.name}: which column is the property to learn? Pass --target COLUMN (several: A,B,C).")
    if blocks is None and col is None:
        raise ConfigError(f"{source.name}: which column holds the SMILES? Pass --smiles-column COLUMN.")
    if id_column and id_column not in frame.columns:
        raise ConfigError(f"{source.name}: ID column '{id_column}' not found.")
    family, descriptors = parse_model(model)
    targets = tuple(t.strip() for t in str(target).split(",") if t.strip())
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        from medassist.exceptions import SchemaError

        raise SchemaError(f"{source.name}: target column {', '.join(repr(t) for t in missing)} not found. "
                          f"The table has: {', '.join(map(str, frame.columns[:30]))}.")
    classification = info.task == "binary" if info is not None else _looks_binary(frame, targets)
    spec = ScreeningSpec(
        targets=targets, smiles_column=col or "smiles", model=family, descriptors=descriptors,
        size=look_up_option(size, ModelSize, name="model size"), seed=seed, split=split,
        n_members=ensemble or DEFAULT_ENSEMBLE, id_column=id_column, positive_class=positive_class, n_boot=n_boot,
        train=default_train_config(family, seed=seed, epochs=epochs, classification=classification),
    )
    return train_screening(frame, spec=spec, source=source, out_dir=Path(out), overwrite=overwrite, progress=progress,
                           console=console, molblocks=blocks)


def _looks_binary(frame: pd.DataFrame, targets: tuple[str, ...]) -> bool:
    t = targets[0]
    if t not in frame.columns:
        return False
    return frame[t].dropna().astype(str).str.strip().nunique() == 2


class ScreeningAssistant:
    """Predicts, explains, evaluates and screens with one screening bundle."""

    def __init__(self, *, bundle: ModelBundle) -> None:
        self.bundle = bundle

    @classmethod
    def load(cls, path: str | Path) -> ScreeningAssistant:
        bundle = load_bundle(path)
        if bundle.task != "screening":
            raise ConfigError(f"{path}: a '{bundle.task}' bundle, not a screening model.")
        return cls(bundle=bundle)

    def predict(self, data: str | Path, *, smiles_column: str | None = None, explain: bool = False, top_k: int = 3) -> tuple[pd.DataFrame, list[Skipped]]:
        frame, source, col, blocks = load_molecules(data, smiles_column=smiles_column)
        return predict_frame(self.bundle, frame, smiles_column=col, source=source.name, molblocks=blocks, explain=explain, top_k=top_k)

    def evaluate(self, data: str | Path, *, smiles_column: str | None = None, n_boot: int = 1000) -> dict[str, Any]:
        frame, source, col, blocks = load_molecules(data, smiles_column=smiles_column)
        return evaluate_frame(self.bundle, frame, smiles_column=col, source=source.name, n_boot=n_boot, molblocks=blocks)

    def explain(self, smiles: str, *, task: int = 0) -> tuple[Any, Any]:
        """(standardised molecule, atom attributions) for one SMILES."""
        from medassist.data.io.molecules import prepare_molecule
        from medassist.exceptions import DataError
        from medassist.explain.molecules import atom_attributions

        mol, _, reason = prepare_molecule(smiles, kind="smiles", standardizer=self.bundle.featurizer.make_standardizer())
        if mol is None:
            raise DataError(f"{smiles!r}: {reason}")
        return mol, atom_attributions(self.bundle, mol, task=task)

    def screen(self, library: str | Path | pd.DataFrame, **options: Any) -> ScreenResult:
        """Screen a library file, a table or a bundled library (e.g. ``chembl_drugs``) to the end: the
        ranked hits, skipped molecules and summary (``pipeline.screen.screen``; ``on_progress``
        is called after each batch; ``ray_address="auto"`` or ``"HOST:PORT"`` scores on a Ray
        cluster with the same result)."""
        from medassist.pipeline.screen import screen

        return screen(self.bundle, *self._library(library, options), **options)

    def iter_screen(self, library: str | Path | pd.DataFrame, **options: Any) -> Generator[ScreenChunk, None, ScreenResult]:
        """The same, batch by batch (``pipeline.screen.iter_screen``)."""
        from medassist.pipeline.screen import iter_screen

        return iter_screen(self.bundle, *self._library(library, options), **options)

    @staticmethod
    def _library(library: str | Path | pd.DataFrame, options: dict[str, Any]) -> tuple[Path | pd.DataFrame]:
        if isinstance(library, pd.DataFrame):
            return (library,)
        path = Path(library)
        if not path.exists() and is_dataset_name(str(library)):
            info = get_dataset(str(library))
            options.setdefault("smiles_column", info.extras.get("smiles_column"))
            return (info.load(),)
        if path.exists():
            file_kind(path)  # an unknown file type is refused before anything runs
        return (path,)
