"""Image diagnosis handlers for ``medassist train | evaluate | predict``.

    medassist train --data FILE.npz|FOLDER|FILE.csv --out DIR [--model resnet18|resnet50|densenet121] [--size base|small|large] [--init-from CKPT]
    medassist predict DIR --image FILE.dcm|FILE.nii.gz|FILE.png|SERIES_FOLDER [--explain OUT.png]
    medassist evaluate DIR --data FILE.npz|FOLDER [--report OUT.html]

A FOLDER of ``<class>/<case>/`` (one DICOM series or one NIfTI file each) trains a 3D model on
whole volumes brought to one orientation (RAS+) and one voxel spacing (see data/io/volumes.py).
"""

from __future__ import annotations

import json

import typer

from medassist.cli.commands import EvaluateRequest, PredictRequest, TrainRequest, emit_evaluation, err, out, train_options
from medassist.exceptions import ConfigError


def train_images(req: TrainRequest) -> None:
    from medassist.assistants.imaging import ImageTrainOptions, train_image_diagnosis

    opts = train_options(req, ImageTrainOptions)
    outcome = train_image_diagnosis(  # --size defaults to base for images (the CLI fills it in)
        req.data, out=req.out, model=opts.model or "resnet18", size=opts.size, seed=opts.seed, epochs=opts.epochs,
        window=opts.window, class_weight=opts.class_weight, dp_epsilon=opts.dp_epsilon, dp_delta=opts.dp_delta,
        dp_max_grad_norm=opts.dp_max_grad_norm, init_from=opts.init_from, overwrite=req.overwrite, progress=req.progress, console=err,
    )
    if outcome.init is not None:
        init = outcome.init
        err.print(f"note: {init['summary']}", highlight=False)
        for row in init["skipped"][:20]:
            err.print(f"  skipped {row['name']}: {row['reason']}", highlight=False)
        if len(init["skipped"]) > 20:
            err.print(f"  ... and {len(init['skipped']) - 20} more skipped (listed in the model card)", highlight=False)
    for note in outcome.notes[:10]:
        err.print(f"note: {note}", highlight=False)
    if outcome.privacy:
        p = outcome.privacy
        err.print(f"differential privacy: spent ε = {p['epsilon']:.3g}, δ = {p['delta']:g} "
                  f"(ledger total for this image set: ε = {p['ledger_spent']:.3g} of {p['ledger_budget']:g})", highlight=False)
    m = outcome.metrics["metrics"]

    def fmt(v: dict) -> str:
        if v.get("value") is None:
            return "n/a"
        ci = "" if v.get("ci_low") is None else f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        return f"{v['value']:.3f}{ci}"

    if outcome.task == "multilabel":
        line = (f"test macro AUC {fmt(m['macro_auc'])}  MedMNIST AUC {fmt(m['medmnist_auc'])}  ACC {fmt(m['medmnist_acc'])}")
    else:
        mm = outcome.metrics["medmnist"]
        line = f"test AUC {fmt(m['auc'])}  accuracy {fmt(m['accuracy'])}  ECE {fmt(m['ece'])}  (MedMNIST AUC {mm['auc']:.3f}, ACC {mm['acc']:.3f})"
    err.print(f"{line}  ({outcome.n_parameters:,} parameters, best epoch {outcome.result.best_epoch}, "
              f"{outcome.result.seconds:.0f} s)", highlight=False)
    for row in outcome.baselines:
        d = row["auc_difference"]
        auc = row["metrics"].get("auc", {}).get("value")
        diff = "" if d.get("difference") is None else f"; difference {d['difference']:+.3f}" + (
            f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d.get("ci_low") is not None else "")
        err.print(f"{row['label']}: test AUC {'n/a' if auc is None else f'{auc:.3f}'}{diff}", highlight=False)
        err.print(f"  {row['verdict']}", highlight=False)
    out.print(f"bundle: {outcome.bundle_dir}\nreport: {outcome.report}", highlight=False)


def evaluate_images(req: EvaluateRequest) -> None:
    from medassist.assistants.imaging import ImagingAssistant

    result = ImagingAssistant.load(req.bundle).evaluate(req.data, n_boot=req.n_boot, report=req.report)
    emit_evaluation(req, result)


def predict_image(req: PredictRequest) -> None:
    from medassist.assistants.imaging import ImagingAssistant

    if req.image is None:
        raise ConfigError("An image model predicts from one image: pass --image FILE.dcm|FILE.nii.gz|FILE.png|SERIES_FOLDER [--explain OUT.png].")
    if req.data is not None or req.out is not None:
        raise ConfigError("--data/--out are for table models; an image model takes --image FILE and prints JSON.")
    explain_path = req.explain_path if req.explain else None
    result = ImagingAssistant.load(req.bundle).predict(req.image, explain_path=explain_path)
    for w in result.get("warnings", []):
        err.print(f"warning: {w}", highlight=False)
    typer.echo(json.dumps(result, indent=1))
