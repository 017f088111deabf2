"""Model cards (Mitchell et al., 2019): what a model is for, what it was trained on, how it did.

A card is saved next to the model bundle as plain JSON (``to_dict`` / ``from_dict``) and shown to
people as Markdown (``to_markdown``) or inside the HTML report.

Example:
    >>> texts = default_card_texts("binary", "diabetes")
    >>> card = ModelCard(name="diabetes-mlp", version="1", task="binary", target="diabetes",
    ...                  classes=["no", "yes"], positive_class="yes", **texts)
    >>> ModelCard.from_dict(card.to_dict()) == card
    True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medassist.exceptions import ConfigError
from medassist.options import TaskKind, look_up_option

#: Version of the JSON layout written by :meth:`ModelCard.to_dict`.
CARD_SCHEMA_VERSION = 1
DISCLAIMER = (
    "Decision support, not a medical device. This model has not been cleared or approved by any "
    "regulator. Its output must be reviewed by a qualified clinician and must not be the sole "
    "basis of a diagnosis or treatment decision."
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_card_texts(task: str, target: str) -> dict[str, Any]:
    """Plain-language defaults for ``intended_use``, ``out_of_scope``, ``limitations`` and
    ``ethical_considerations``, to be edited by whoever knows the deployment.

    Args:
        task: "binary" or "multiclass".
        target: name of the predicted outcome, e.g. "diabetes".

    Returns:
        Keyword arguments for :class:`ModelCard`.
    """
    kind = look_up_option(task, TaskKind, name="task")
    what = {
        TaskKind.BINARY: f"the probability of '{target}'",
        TaskKind.MULTICLASS: f"a probability for each category of '{target}'",
        TaskKind.MULTILABEL: f"a probability for each label of '{target}'",
        TaskKind.REGRESSION: f"the value of '{target}' with an uncertainty",
        TaskKind.SURVIVAL: f"the risk of '{target}' over time",
        TaskKind.TREATMENT_EFFECT: f"the expected '{target}' under each treatment option",
    }[kind]
    return {
        "intended_use": (
            f"Research and decision support: estimates {what} from routinely collected data, to "
            "help a qualified clinician prioritise review. The clinician remains responsible for "
            "every decision."
        ),
        "out_of_scope": (
            "Diagnosing, ruling out or triaging patients without clinician review; use on "
            "populations, sites, devices or time periods unlike the training data; use for "
            "children, pregnancy or emergencies unless such patients were in the training data; "
            "any use as a certified medical device."
        ),
        "limitations": [
            "Performance was measured on a held-out split of the same source as the training "
            "data; it may be worse at another site or in another period (dataset shift).",
            "Probabilities are calibrated on the validation split only; recalibrate before use "
            "on a new population.",
            "Metrics on small subgroups are uncertain; see the confidence intervals.",
        ],
        "ethical_considerations": [
            "Historical data can encode unequal access to care; the model may reproduce such "
            "bias. Check subgroup performance (e.g. by sex and age) before use.",
            "A wrong prediction can delay care (false negative) or cause unnecessary tests "
            "(false positive); choose the decision threshold with clinicians.",
            "Patients should be told when a model informs their care.",
        ],
    }


@dataclass(kw_only=True)
class ModelCard:
    """Everything a reader needs to judge a model; every field is a plain JSON value.

    Args:
        name: model name.
        version: model version.
        task: "binary" or "multiclass".
        target: predicted outcome.
        classes: class names in output-column order.
        positive_class: name of the positive class (binary), None for multiclass.
        intended_use: who should use it, for what.
        out_of_scope: uses it was not designed or tested for.
        data: source, provenance, licence, n_train, n_val, n_test, features, ...
        model: family, size, n_parameters, hyperparameters, ...
        training: optimiser, epochs, early stopping, seed, ...
        metrics: ``evaluate_classification`` output on the test split.
        baselines: the simple models fitted on the same split and scored on the same test rows
            (``{"comparators": [medassist.evaluation.comparison.compare(...), ...], "not_fitted",
            "evaluate"}``), each with the paired AUC difference and a verdict in words.
        calibration: e.g. ``TemperatureScaler.to_dict()``.
        limitations: known limitations.
        ethical_considerations: risks and mitigations.
        privacy: how personal data was handled (may be empty).
        created: ISO 8601 timestamp; now (UTC) by default.
    """

    name: str
    version: str
    task: str
    target: str
    classes: list[str]
    positive_class: str | None = None
    intended_use: str = ""
    out_of_scope: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    limitations: list[str] = field(default_factory=list)
    ethical_considerations: list[str] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        for name in ("name", "version", "target", "created", "intended_use", "out_of_scope"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"The '{name}' field of ModelCard must be a string. "
                    f"Got {getattr(self, name)!r} instead."
                )
        self.task = look_up_option(self.task, TaskKind, name="task").value
        try:
            datetime.fromisoformat(self.created)
        except ValueError:
            raise ConfigError(
                f"The 'created' field of ModelCard must be an ISO 8601 timestamp. "
                f"Got {self.created!r} instead."
            ) from None
        classless = self.task in (TaskKind.REGRESSION.value, TaskKind.SURVIVAL.value, TaskKind.TREATMENT_EFFECT.value)
        if isinstance(self.classes, str) or (len(self.classes) < 2 and not classless):
            raise ConfigError(
                f"The 'classes' field of ModelCard must list at least 2 class names. "
                f"Got {self.classes!r} instead."
            )
        self.classes = [str(c) for c in self.classes]
        if self.task == TaskKind.BINARY:
            if len(self.classes) != 2 or self.positive_class not in self.classes:
                raise ConfigError(
                    "A binary ModelCard needs exactly 2 classes and a positive_class among them. "
                    f"Got classes={self.classes!r}, positive_class={self.positive_class!r}."
                )
        elif self.positive_class is not None and self.positive_class not in self.classes:
            raise ConfigError(
                f"The 'positive_class' field of ModelCard must be one of {self.classes} or None. "
                f"Got {self.positive_class!r} instead."
            )
        for name in ("data", "model", "training", "metrics", "baselines", "calibration", "privacy"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"The '{name}' field of ModelCard must be a dict.")
        for name in ("limitations", "ethical_considerations"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"The '{name}' field of ModelCard must be a list of strings.")
            setattr(self, name, list(value))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, plus ``schema_version``."""
        d = dataclasses.asdict(self)
        d["schema_version"] = CARD_SCHEMA_VERSION
        try:  # fail here, not later when the bundle is written
            json.dumps(d, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"ModelCard holds a value that is not plain JSON: {err}") from None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Rebuild a card from :meth:`to_dict` output; unknown keys are an error."""
        if not isinstance(d, dict):
            raise ConfigError(f"ModelCard.from_dict expects a dict. Got {type(d).__name__}.")
        d = dict(d)
        version = d.pop("schema_version", CARD_SCHEMA_VERSION)
        if version != CARD_SCHEMA_VERSION:
            raise ConfigError(
                f"ModelCard schema_version {version!r} is not supported; "
                f"expected {CARD_SCHEMA_VERSION}."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ModelCard.from_dict: unknown key(s) {unknown}.")
        required = {
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(d))
        if missing:
            raise ConfigError(f"ModelCard.from_dict: missing key(s) {missing}.")
        return cls(**d)

    def to_markdown(self) -> str:
        """A readable card in Markdown."""
        lines = [
            f"# Model card: {self.name} (version {self.version})",
            "",
            f"> **{DISCLAIMER}**",
            "",
            f"- **Task:** {self.task} classification of `{self.target}`",
            f"- **Classes:** {', '.join(self.classes)}",
        ]
        if self.positive_class is not None:
            lines.append(f"- **Positive class:** {self.positive_class}")
        lines += [f"- **Created:** {self.created}", ""]
        lines += ["## Intended use", "", self.intended_use or "_Not stated._", ""]
        lines += ["## Out of scope", "", self.out_of_scope or "_Not stated._", ""]
        for title, section in (
            ("Data", {k: v for k, v in self.data.items() if k != "inputs"}), ("Model", self.model), ("Training", self.training),
            ("Calibration", self.calibration), ("Privacy", self.privacy),
        ):
            lines += [f"## {title}", ""]
            lines += [f"- **{k}:** {_md_value(v)}" for k, v in section.items()] or ["_Not stated._"]
            lines.append("")
            if title == "Data" and self.data.get("inputs"):
                lines += _inputs_markdown(self.data["inputs"])
        lines += ["## Performance on the test split", ""]
        lines += _metrics_markdown(self.metrics)
        if self.baselines:
            lines += ["## Compared with simple baselines (same split, same test rows)", ""]
            lines += _baselines_markdown(self.baselines)
        for title, items in (
            ("Limitations", self.limitations),
            ("Ethical considerations", self.ethical_considerations),
        ):
            lines += [f"## {title}", ""]
            lines += [f"- {item}" for item in items] or ["_None stated._"]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def input_descriptions(features: list[str], dictionary: Any) -> list[dict[str, Any]]:
    """The model's inputs in clinical words (``DataDictionary`` entries), for the card."""
    out = []
    for c in features:
        e = dictionary.get(c) if dictionary else None
        row: dict[str, Any] = {"column": c, "label": e.display_label if e else c, "unit": e.unit if e else ""}
        if e is not None:
            if e.codes:
                row["codes"] = dict(e.codes)
            if e.min is not None or e.max is not None:
                row["plausible"] = [e.min, e.max]
            if e.role.note:
                row["note"] = e.role.note
        out.append(row)
    return out


def _inputs_markdown(inputs: list[dict[str, Any]]) -> list[str]:
    lines = ["### Inputs", "", "| Input | Column | Unit | Codes or plausible range |", "|---|---|---|---|"]
    for i in inputs:
        if i.get("codes"):
            extra = "; ".join(f"{k} = {v}" for k, v in i["codes"].items())
        elif i.get("plausible"):
            lo, hi = i["plausible"]
            extra = f"{'…' if lo is None else f'{lo:g}'} to {'…' if hi is None else f'{hi:g}'}"
        else:
            extra = ""
        note = f" ({i['note']})" if i.get("note") else ""
        lines.append(f"| {i.get('label', i['column'])}{note} | `{i['column']}` | {i.get('unit', '')} | {extra} |")
    return lines + [""]


def _md_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}={_md_value(v)}" for k, v in value.items()) if value else "none"
    return "not recorded" if value is None else str(value)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _metrics_markdown(metrics: dict[str, Any]) -> list[str]:
    values = metrics.get("metrics") if isinstance(metrics, dict) else None
    if not values:
        return ["_No test metrics recorded._", ""]
    alpha = metrics.get("bootstrap", {}).get("alpha", 0.05)
    level = f"{100 * (1 - alpha):g}%"
    lines = [f"n = {metrics.get('n', '?')}", "", f"| Metric | Value | {level} CI |",
             "|---|---|---|"]
    for name, m in values.items():
        ci = "n/a" if m.get("ci_low") is None else f"{_fmt(m['ci_low'])} to {_fmt(m['ci_high'])}"
        lines.append(f"| {name} | {_fmt(m.get('value'))} | {ci} |")
    return lines + [""]


def _baselines_markdown(baselines: dict[str, Any]) -> list[str]:
    rows = baselines.get("comparators") or []
    lines: list[str] = []
    if rows:
        lines += ["| Model | AUC (95% CI) | Accuracy | Brier | AUC difference, this model − it (95% paired CI) |",
                  "|---|---|---|---|---|"]
        for r in rows:
            m, d = r.get("metrics", {}), r.get("auc_difference", {})
            auc = m.get("auc", {})
            ci = "" if auc.get("ci_low") is None else f" ({_fmt(auc['ci_low'])} to {_fmt(auc['ci_high'])})"
            diff = "n/a" if d.get("difference") is None else f"{d['difference']:+.3f}" + (
                "" if d.get("ci_low") is None else f" ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})")
            lines.append(f"| {r.get('label', r.get('name'))} | {_fmt(auc.get('value'))}{ci} | "
                         f"{_fmt(m.get('accuracy', {}).get('value'))} | {_fmt(m.get('brier', {}).get('value'))} | {diff} |")
        lines.append("")
        lines += [f"- {r['verdict']}" for r in rows if r.get("verdict")]
    for name, why in (baselines.get("not_fitted") or {}).items():
        lines.append(f"- {name}: not fitted ({why})")
    if baselines.get("evaluate"):
        lines.append(f"- On new data (`medassist evaluate`): {baselines['evaluate']}")
    if baselines.get("selection"):
        lines.append(f"- Model selection: {baselines['selection'].get('why', '')}")
    return lines + [""]
