"""Tabular diagnosis handlers for ``medassist train | evaluate | predict``."""

from __future__ import annotations

import json

import typer

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, err, out
from medassist.data.io.tables import write_table
from medassist.exceptions import ConfigError


def train_table(req: TrainRequest) -> None:
    from medassist.assistants.diagnosis import train_diagnosis

    outcome = train_diagnosis(
        req.data, out=req.out, target=req.target, model=req.model or "mlp", size=req.size, seed=req.seed,
        id_column=req.id_column, positive_class=req.positive_class, exclude=req.exclude, epochs=req.epochs,
        ensemble=req.ensemble, class_weight=req.class_weight, drop_missing_target=req.drop_missing_target,
        dp_epsilon=req.dp_epsilon, dp_delta=req.dp_delta, dp_max_grad_norm=req.dp_max_grad_norm,
        overwrite=req.overwrite, progress=req.progress, console=err,
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
    out.print(f"bundle: {outcome.bundle_dir}\nreport: {outcome.report}", highlight=False)


def evaluate_table(req: EvaluateRequest) -> None:
    from medassist.assistants.diagnosis import DiagnosisAssistant, load_input

    assistant = DiagnosisAssistant.load(req.bundle)
    frame, source = load_input(req.data)
    result = assistant.evaluate(frame, source=source.name, n_boot=req.n_boot, report=req.report)
    typer.echo(json.dumps(result, indent=1))


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
    write_table(preds, req.out)
    err.print(f"wrote {len(preds)} predictions to {req.out} (model: {assistant.bundle.model_card.get('name', '')})", highlight=False)
