"""The diagnosis assistant (tabular): "what does this patient most likely have, how sure are
we, and why?" Train a model on a table, then predict, explain and evaluate with its bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from medassist.data.sources import DataSource, resolve_table
from medassist.exceptions import ConfigError
from medassist.featurizers.tabular import parse_missing_values
from medassist.options import ModelSize, look_up_option
from medassist.pipeline import TabularSpec, TrainOutcome, evaluate_table, predict_table, train_tabular
from medassist.pipeline.tabular import bundle_warnings
from medassist.privacy.ledger import PrivacyLedger
from medassist.registry.bundle import ModelBundle, load_bundle
from medassist.settings import Settings
from medassist.training import Monitor, TrainConfig
from medassist.training.privacy import DEFAULT_DELTA, DEFAULT_MAX_GRAD_NORM, privacy_config

#: The model family when the user does not say (``--model``; the service's research plugin):
#: TabM, itself an ensemble of k weight-sharing members (on 5-fold CV of the bundled tables it
#: ranked best of the deep models, ahead of the 5-member MLP ensemble, at a similar CPU cost).
DEFAULT_MODEL = "tabm"
#: Members of the cross-fitted ensemble when the user does not say (``--ensemble 0``): the MLP
#: is cheap enough to ensemble by default; the FT-Transformer trains one model unless asked;
#: TabM is one model holding k members trained at once, so one is its default.
DEFAULT_ENSEMBLE = {"mlp": 5, "ft": 1, "tabm": 1}
#: The model size when the user does not say (the CLI, the service's research plugin).
DEFAULT_SIZE = ModelSize.SMALL


@dataclass(frozen=True, kw_only=True)
class DiagnosisTrainOptions:
    """What ``medassist train --task diagnosis`` accepts; any other train option is refused by name.

    ``dp_epsilon`` is honoured: DP-SGD through the Trainer (one model, no ensemble), ε spent
    written to the model card and the privacy ledger.
    """

    target: str | None = None
    model: str | None = None
    size: ModelSize = DEFAULT_SIZE
    seed: int = 0
    id_column: str | None = None
    positive_class: str | None = None
    exclude: tuple[str, ...] = ()
    epochs: int | None = None
    ensemble: int = 0
    class_weight: str = "none"
    drop_missing_target: bool = False
    dp_epsilon: float | None = None
    dp_delta: float = DEFAULT_DELTA
    dp_max_grad_norm: float = DEFAULT_MAX_GRAD_NORM
    # leakage override and declared categorical columns (``--allow-leaky-column``, ``--categorical``)
    allow_leaky_column: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    dictionary: Path | None = None
    missing_values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", look_up_option(self.size, ModelSize, name="model size"))
        privacy_config(self.dp_epsilon, delta=self.dp_delta, max_grad_norm=self.dp_max_grad_norm)  # checks the DP values


def default_train_config(model: str, *, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    """The training defaults per model family (also used by benchmarks/diagnosis_tabular.py)."""
    if model == "ft":
        return TrainConfig(epochs=epochs or 100, patience=20, lr=3e-4, weight_decay=1e-5, seed=seed, monitor=Monitor.VAL_LOSS)
    if model == "tabm":
        # Chosen by 5-fold CV on the bundled tables (pima, wdbc, biopsy, heart_disease): against
        # batch 64 / lr 2e-3 / patience 16, the same AUC for about half the CPU time.
        return TrainConfig(epochs=epochs or 100, patience=10, lr=3e-3, weight_decay=3e-4, batch_size=128, seed=seed,
                           monitor=Monitor.VAL_LOSS)
    return TrainConfig(epochs=epochs or 150, patience=20, lr=1e-3, weight_decay=0.05, seed=seed, monitor=Monitor.VAL_LOSS)


def n_members(model: str, ensemble: int = 0, *, dp_epsilon: float | None = None) -> int:
    """Members of the ensemble: as asked, else one under DP (each member would spend the budget
    again on the same rows), else the family's default."""
    if ensemble:
        return ensemble
    return 1 if dp_epsilon is not None else DEFAULT_ENSEMBLE.get(model, 1)


def diagnosis_spec(
    *, target: str, model: str = DEFAULT_MODEL, size: ModelSize | str = DEFAULT_SIZE, seed: int = 0, id_column: str | None = None,
    positive_class: str | None = None, exclude: tuple[str, ...] = (), epochs: int | None = None, ensemble: int = 0,
    class_weight: str = "none", dp_epsilon: float | None = None, dp_delta: float = DEFAULT_DELTA,
    dp_max_grad_norm: float = DEFAULT_MAX_GRAD_NORM, drop_missing_target: bool = False, categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (), allow_leaky_column: tuple[str, ...] = (), missing_values: dict[str, list[Any]] | None = None,
    select_model: bool = False,
) -> TabularSpec:
    """The TabularSpec of a diagnosis run: the family's training defaults, DP-SGD when ``dp_epsilon``
    is given, and the ensemble size (``n_members``). The CLI and the service both train from it."""
    cfg = default_train_config(model, seed=seed, epochs=epochs)
    privacy = privacy_config(dp_epsilon, delta=dp_delta, max_grad_norm=dp_max_grad_norm)
    if privacy is not None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "privacy": privacy.to_dict()})
    return TabularSpec(
        target=target, model=model, size=look_up_option(size, ModelSize, name="model size"), seed=seed, id_column=id_column, positive_class=positive_class,
        exclude=tuple(exclude), missing_target="drop" if drop_missing_target else "error", train=cfg,
        n_members=n_members(model, ensemble, dp_epsilon=dp_epsilon), class_weight=class_weight, categorical=tuple(categorical),
        numeric=tuple(numeric), allow_leaky=tuple(allow_leaky_column), missing_values=missing_values or {},
        select_model=select_model,
    )


def train_diagnosis(
    data: str | Path,
    *,
    out: Path,
    target: str | None = None,
    model: str = DEFAULT_MODEL,
    size: ModelSize | str = DEFAULT_SIZE,
    seed: int = 0,
    id_column: str | None = None,
    positive_class: str | None = None,
    exclude: tuple[str, ...] = (),
    epochs: int | None = None,
    ensemble: int = 0,
    class_weight: str = "none",
    dp_epsilon: float | None = None,
    dp_delta: float = DEFAULT_DELTA,
    dp_max_grad_norm: float = DEFAULT_MAX_GRAD_NORM,
    drop_missing_target: bool = False,
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
    allow_leaky_column: tuple[str, ...] = (),
    dictionary: str | Path | None = None,
    missing_values: tuple[str, ...] | dict[str, list[Any]] = (),
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> TrainOutcome:
    """Train a tabular diagnosis model on a CSV file or a bundled data set and write a bundle.

    A bundled data set brings its default target, ID column and site column. A column that
    leaks the target stops training (``DataError``) unless named in ``allow_leaky_column``;
    ``categorical``/``numeric`` override how input columns are encoded. ``missing_values``
    (``"insulin=0"``, ``"bmi=0,-99"``, or a dict) declares values that mean missing.
    ``model="auto"`` trains the default deep model (``DEFAULT_MODEL``) and a logistic regression
    and deploys the one with the higher validation AUC (recorded in the model card).
    """
    frame, source = resolve_table(data, dictionary=dictionary)
    if source.dataset is not None:
        target = target or source.dataset.target
        id_column = id_column or source.dataset.id_column
        positive_class = positive_class or (source.dataset.positive_class if target == source.dataset.target else None)
    if not target:
        raise ConfigError(f"{source.name}: which column is the outcome? Pass --target COLUMN.")
    select_model = model == "auto"
    model = DEFAULT_MODEL if select_model else model
    declared = dict(missing_values) if isinstance(missing_values, dict) else parse_missing_values(tuple(missing_values))
    spec = diagnosis_spec(
        target=target, model=model, size=size, seed=seed, id_column=id_column, positive_class=positive_class, exclude=exclude,
        epochs=epochs, ensemble=ensemble, class_weight=class_weight, dp_epsilon=dp_epsilon, dp_delta=dp_delta,
        dp_max_grad_norm=dp_max_grad_norm, drop_missing_target=drop_missing_target, categorical=categorical, numeric=numeric,
        allow_leaky_column=allow_leaky_column, missing_values=declared, select_model=select_model,
    )
    ledger = None
    if dp_epsilon is not None:
        settings = Settings()
        ledger = PrivacyLedger(path=settings.privacy_ledger_path, total_epsilon=settings.privacy_budget_epsilon)
    return train_tabular(frame, spec=spec, source=source, out_dir=Path(out), overwrite=overwrite, progress=progress,
                         console=console, ledger=ledger)


class DiagnosisAssistant:
    """Predicts, explains and evaluates with one tabular diagnosis bundle.

    Example:
        >>> assistant = DiagnosisAssistant.load("models/wdbc")
        >>> assistant.predict(patients_df).loc[0, "prob_malignant"]
    """

    def __init__(self, *, bundle: ModelBundle) -> None:
        self.bundle = bundle

    @classmethod
    def load(cls, path: str | Path) -> DiagnosisAssistant:
        return cls(bundle=load_bundle(path))

    def predict(self, frame: pd.DataFrame, *, source: str = "input", explain: bool = True, top_k: int = 3) -> pd.DataFrame:
        return predict_table(self.bundle, frame, source=source, explain=explain, top_k=top_k)

    def evaluate(
        self, frame: pd.DataFrame, *, source: str = "input", n_boot: int = 1000, report: Path | None = None,
        include_training_rows: bool = False,
    ) -> dict[str, Any]:
        """Metrics on the rows the model never saw (all rows, labelled, with ``include_training_rows``)."""
        return evaluate_table(self.bundle, frame, source=source, n_boot=n_boot, report=report,
                              include_training_rows=include_training_rows)

    @property
    def warnings(self) -> list[str]:
        """Warnings every answer of this model carries (e.g. poor calibration on its test set)."""
        return bundle_warnings(self.bundle)

    @property
    def model_card(self) -> dict[str, Any]:
        return self.bundle.model_card


def load_input(data: str | Path) -> tuple[pd.DataFrame, DataSource]:
    return resolve_table(data)
