"""Prognosis (survival) handlers for ``medassist train | evaluate | predict``.

    medassist train --task survival --data gbsg.csv --time days --event died --id-column pid --out models/gbsg
    medassist evaluate models/gbsg --data gbsg_new.csv [--json]
    medassist predict models/gbsg --data patients.csv --out risk.csv
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, emit_evaluation, err, format_interval, out, train_options
from medassist.data.io.tables import write_table
from medassist.exceptions import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from medassist.assistants.prognosis import PrognosisAssistant


def train_survival(req: TrainRequest) -> None:
    from medassist.assistants.prognosis import SurvivalTrainOptions, horizon_label, train_prognosis

    opts = train_options(req, SurvivalTrainOptions)  # refuses, by name, what the survival task does not accept
    outcome, horizons, unit = train_prognosis(
        req.data, out=req.out, time=opts.time_column, event=opts.event_column, id_column=opts.id_column, horizons=opts.horizon,
        exclude=opts.exclude, size=opts.size, seed=opts.seed, epochs=opts.epochs, ensemble=opts.ensemble,
        drop_missing_target=opts.drop_missing_target, overwrite=req.overwrite, progress=req.progress, console=err,
    )
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False)
    m = outcome.metrics

    def fmt(k: str) -> str:
        v = m.get(k)
        return "n/a" if v is None else f"{v:.3f}"

    err.print(f"held-out test ({m['n']} rows, {m['events']} events): Harrell's C {fmt('c_index')}  Uno's C {fmt('uno_c_index')}  "
              f"integrated Brier {fmt('integrated_brier')}  ({outcome.n_parameters:,} parameters per member)", highlight=False)
    err.print(f"horizons: {', '.join(horizon_label(h) for h in horizons)} {unit}", highlight=False)
    out.print(f"bundle: {outcome.bundle_dir}", highlight=False)


def evaluate_survival(req: EvaluateRequest) -> None:
    from medassist.assistants.prognosis import PrognosisAssistant, horizon_label, load_input

    if req.report is not None:
        raise ConfigError("--report: survival models have no HTML report yet; use --json or --out FILE.json.")
    assistant = PrognosisAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    result = assistant.evaluate(frame, source=source.name, n_boot=req.n_boot)
    m = result["metrics"]
    seen = result["n_seen_in_training"]
    rows = f"{result['n_evaluated']} of {result['n_rows']} rows evaluated ({result['events']} events)"
    if seen:
        rows += f"; {seen} rows seen in training were excluded"
    labels = {"harrell_c": "Harrell's C", "uno_c": "Uno's C", "integrated_brier": "integrated Brier"}
    lines = [f"{source.name}: {rows}",
             "  ".join(f"{labels[k]} {format_interval(m[k])}" for k in labels if k in m)]
    for h in result["horizons"]:
        lab = horizon_label(h)
        if f"auc_{lab}" in m:
            lines.append(f"at {lab} {result['time_unit']}: AUC {format_interval(m[f'auc_{lab}'])}  Brier {format_interval(m[f'brier_{lab}'])}")
    lines += [f"note: {n}" for n in result["notes"]] + [f"warning: {w}" for w in result["warnings"]]
    emit_evaluation(req, result, lines=lines)


def with_flags_and_factors(assistant: PrognosisAssistant, frame: pd.DataFrame, preds: pd.DataFrame, *, source: str, explain: bool,
                           top_k: int) -> pd.DataFrame:
    """``preds`` with the columns a diagnosis prediction carries too: unknown categories and inputs
    outside the training range per row and, with ``explain``, the ``top_k`` factors (integrated
    gradients of the restricted mean survival time against an average patient; weight in time
    units, > 0 = longer expected survival)."""
    import numpy as np

    from medassist.assistants.prognosis_curves import row_flags, top_factors

    result = preds.copy()
    flags = row_flags(assistant, frame, source=source)
    for key in ("unknown_categories", "out_of_range"):
        result[f"n_{key}"] = [len(r) for r in flags[key]]
        result[key] = ["; ".join(r) for r in flags[key]]
    if explain:
        x = assistant.model.features(frame.reset_index(drop=True), source=source)
        tops = top_factors(assistant, frame, x, top_k=top_k)
        for r in range(top_k):
            result[f"factor_{r + 1}"] = [t[r]["column"] if len(t) > r else "" for t in tops]
            result[f"factor_{r + 1}_weight"] = [round(t[r]["weight"], 4) if len(t) > r else np.nan for t in tops]
    return result


def predict_survival(req: PredictRequest) -> None:
    from medassist.assistants.prognosis import PrognosisAssistant, load_input

    if req.data is None or req.out is None:
        raise ConfigError("A survival model predicts from a table: pass --data FILE.csv and --out PREDICTIONS.csv.")
    if req.image is not None:
        raise ConfigError("--image: a survival model predicts from a table, not an image.")
    assistant = PrognosisAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    used = set(assistant.covariates) | {assistant.id_column, assistant.time, assistant.event}
    extra = [c for c in frame.columns if c not in used]
    if extra:
        err.print(f"note: column(s) not used by the model: {', '.join(map(str, extra))}", highlight=False)
    preds = assistant.predict(frame, source=source.name)
    preds = with_flags_and_factors(assistant, frame, preds, source=source.name, explain=req.explain, top_k=req.top_k)
    write_table(preds, req.out)
    n_imp = int((preds["n_imputed"] > 0).sum())
    err.print(f"wrote {len(preds)} predictions to {req.out} (model: {assistant.bundle.model_card.get('name', '')})", highlight=False)
    if n_imp:
        err.print(f"note: {n_imp} row(s) had missing inputs, imputed as in training (column n_imputed)", highlight=False)
