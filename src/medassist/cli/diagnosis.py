"""Tabular diagnosis handlers for ``medassist train | evaluate | predict``."""

from __future__ import annotations

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, emit_evaluation, err, format_interval, out, train_options
from medassist.data.io.tables import write_table
from medassist.evaluation.comparison import comparison_lines
from medassist.exceptions import ConfigError


def train_table(req: TrainRequest) -> None:
    from medassist.assistants.diagnosis import DEFAULT_MODEL, DiagnosisTrainOptions, train_diagnosis

    train_options(req, DiagnosisTrainOptions)  # refuses, by name, what the diagnosis task does not accept
    outcome = train_diagnosis(
        req.data, out=req.out, target=req.target, model=req.model or DEFAULT_MODEL, size=req.size, seed=req.seed,
        id_column=req.id_column, positive_class=req.positive_class, exclude=req.exclude, epochs=req.epochs,
        ensemble=req.ensemble, class_weight=req.class_weight, drop_missing_target=req.drop_missing_target,
        dp_epsilon=req.dp_epsilon, dp_delta=req.dp_delta, dp_max_grad_norm=req.dp_max_grad_norm,
        categorical=req.categorical, numeric=req.numeric, allow_leaky_column=req.allow_leaky_column, dictionary=req.dictionary,
        missing_values=req.missing_values, overwrite=req.overwrite, progress=req.progress, console=err,
    )
    from medassist.training import distributed

    distributed.barrier()  # under torchrun: the other ranks wait for rank 0's bundle
    if not distributed.is_main():
        return
    m = outcome.metrics["metrics"]
    for note in outcome.notes:
        err.print(f"note: {note}", highlight=False)

    def fmt(k: str) -> str:
        v = m[k]
        return "n/a" if v["value"] is None else f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"

    if outcome.privacy:
        p = outcome.privacy
        err.print(f"differential privacy: spent ε = {p['epsilon']:.3g}, δ = {p['delta']:g} "
                  f"(ledger total for this data set: ε = {p['ledger_spent']:.3g} of {p['ledger_budget']:g})", highlight=False)
    err.print(
        f"test AUC {fmt('auc')}  accuracy {fmt('accuracy')}  ECE {fmt('ece')}  "
        f"({outcome.n_parameters:,} parameters, best epoch {outcome.result.best_epoch})", highlight=False,
    )
    if outcome.selection:
        err.print(f"model selection (--model auto): {outcome.selection['why']}", highlight=False, soft_wrap=True)
    for line in comparison_lines(outcome.baselines, model=outcome.model_family):
        err.print(line, highlight=False, soft_wrap=True)
    out.print(f"bundle: {outcome.bundle_dir}\nreport: {outcome.report}", highlight=False)


def evaluate_table(req: EvaluateRequest) -> None:
    from medassist.assistants.diagnosis import DiagnosisAssistant, load_input

    assistant = DiagnosisAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    result = assistant.evaluate(frame, source=source.name, n_boot=req.n_boot, report=req.report,
                                include_training_rows=req.include_training_rows)
    m = result["metrics"]
    seen = result["n_seen_in_training"]
    if seen is None:
        rows = f"{result['n_evaluated']} rows evaluated (the bundle cannot tell which rows it was trained on)"
    elif req.include_training_rows:
        rows = f"{result['n_evaluated']} rows evaluated, {seen} of them SEEN IN TRAINING (included on request: optimistic)"
    else:
        rows = (f"{result['n_evaluated']} of {result['n_rows']} rows evaluated (never seen in training)"
                + (f"; {seen} rows seen in training were excluded (--include-training-rows to add them)" if seen else ""))
    lines = [f"{source.name}: {rows}",
             "  ".join(f"{label} {format_interval(m[k])}" for label, k in (("AUC", "auc"), ("accuracy", "accuracy"),
                       ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("Brier", "brier"), ("ECE", "ece"))),
             *(f"note: {n}" for n in result.get("declared_missing", [])),
             *comparison_lines(result.get("baselines", []), model=str(assistant.model_card.get("model", {}).get("family", "model"))),
             *(f"note: baseline {n}" for n in result.get("baseline_notes", [])),
             *(f"warning: {w}" for w in result["warnings"])]
    emit_evaluation(req, result, lines=lines)


def predict_table(req: PredictRequest) -> None:
    from medassist.assistants.diagnosis import DiagnosisAssistant, load_input

    if req.data is None or req.out is None:
        raise ConfigError("A tabular model predicts from a table: pass --data FILE.csv and --out PREDICTIONS.csv.")
    assistant = DiagnosisAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    used = set(assistant.bundle.featurizer.columns_) | {assistant.bundle.schema.id_column}
    extra = [c for c in frame.columns if c not in used]
    if extra:
        err.print(f"note: column(s) not used by the model: {', '.join(map(str, extra))}", highlight=False)
    preds = assistant.predict(frame, source=source.name, explain=req.explain, top_k=req.top_k)
    from medassist.featurizers.tabular import count_declared_missing
    from medassist.pipeline.tabular import declared_missing_note

    declared = getattr(assistant.bundle.featurizer, "missing_values", None) or {}
    for col, n in count_declared_missing(frame, declared).items():
        err.print(f"note: {declared_missing_note(col, declared[col], n)}, as declared when the model was trained", highlight=False)
    write_table(preds, req.out)
    err.print(f"wrote {len(preds)} predictions to {req.out} (model: {assistant.bundle.model_card.get('name', '')})", highlight=False)
    for col, what in (("n_unknown_categories", "with a category never seen in training (column unknown_categories)"),
                      ("n_out_of_range", "with a value outside the training range (column out_of_range)")):
        n = int((preds[col] > 0).sum()) if col in preds.columns else 0
        if n:
            err.print(f"warning: {n} row(s) {what}", highlight=False)
    for w in assistant.warnings:
        err.print(f"warning: {w}", highlight=False)
