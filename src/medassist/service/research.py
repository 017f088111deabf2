"""Research tools as a service plugin: train and evaluate tabular diagnosis models on the bundled
data sets, from the browser or the REST API.

API (``/api/v1/research``, bearer token, role with ``models.train`` unless noted):
    GET  /                              data sets and presets on offer, evaluable bundles, your jobs
    POST /train                         JSON ``{"dataset": "wdbc", "size": "small", ...}`` → a background job (202)
    GET  /jobs/{job_id}                 its progress; once done, the new bundle's id and test metrics
    POST /evaluate                      JSON ``{"bundle_id": ..., "dataset": ..., "rows": "held-out"|"all"}``
                                        → metrics with 95% bootstrap intervals and a report link
    GET  /evaluations/{evaluation_id}/report   the evaluation's HTML report (``models.read``)
Pages (``/research``): the train and evaluate forms, your jobs (progress polled with htmx), an
evaluation's metrics, and its report (``models.read``, like ``/models/{id}/report``).

Only the bundled data sets (``medassist.data.catalog``) can be used here; nothing is uploaded,
which keeps patient data out of a shared server. A data set is chosen by name from a fixed list
and loaded from its package: no request value ever becomes a path (the CLI's ``--data`` accepts
a file path first; this plugin does not go through that resolution).

Training runs the same pipeline as ``medassist train --task diagnosis`` (``train_tabular`` with
the CLI's defaults from ``assistants.diagnosis``), with the service's own privacy ledger, and
writes the bundle into the service's bundle directory, where the model list finds it. Jobs run
one at a time on one background thread and live in this server's memory (visible only to the
user who submitted them). Evaluations are kept under ``MEDASSIST_HOME/research/evaluations``.
Every run is in the audit log: who, which data set (and its SHA-256), which bundle.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path as FsPath
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, Form, HTTPException, Path, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from medassist.assistants.diagnosis import DEFAULT_SIZE, DiagnosisAssistant, diagnosis_spec, n_members
from medassist.data.catalog import DatasetInfo, get_dataset, list_datasets
from medassist.data.sources import DataSource
from medassist.exceptions import DataError
from medassist.options import ModelSize, unknown_name_error
from medassist.pipeline import TabularSpec, prepare_target, train_tabular
from medassist.pipeline.tabular import check_trainable, frame_fingerprint
from medassist.privacy.ledger import PrivacyLedger
from medassist.service.auth import Principal, Require, Surface
from medassist.service.bundles import BundleInfo
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.errors import error_responses
from medassist.service.jobs import BackgroundJob, JobQueue, JobStatus, job_queue
from medassist.service.permissions import Permission
from medassist.service.plugin_common import BundlePlugin, bundle_ref, see_other
from medassist.service.rendering import render
from medassist.training.trainer import TrainerCallback, format_stats

log = logging.getLogger("medassist.service.research")

NAME = "research"
#: The bundle task this plugin trains and evaluates.
TASK = "diagnosis-tabular"
KIT = BundlePlugin(name=NAME, tasks=(TASK,), noun="tabular diagnosis", permission=Permission.TRAIN)
TRAIN_API, TRAIN_PAGE = KIT.use_api, KIT.use_page
READ_API = Require(Permission.MODELS_READ, surface=Surface.API)
READ_PAGE = Require(Permission.MODELS_READ, surface=Surface.PAGE)
JOB_ID = Path(pattern=r"^t[0-9a-f]{20}$", description="the id returned when the training job was submitted")
EVALUATION_ID = Path(pattern=r"^e[0-9a-f]{20}$", description="the id returned by POST /api/v1/research/evaluate")
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"
MAX_ACTIVE_PER_USER = 3
MAX_JOBS = 100
MAX_EPOCHS = 500

api, pages = KIT.api, KIT.pages


class Family(StrEnum):
    TABM = "tabm"  # first: the default, as for the CLI (medassist.assistants.diagnosis.DEFAULT_MODEL)
    MLP = "mlp"
    FT = "ft"


class Rows(StrEnum):
    HELD_OUT = "held-out"
    ALL = "all"


def trainable() -> list[DatasetInfo]:
    """The bundled tabular diagnosis data sets (wdbc, pima, biopsy, heart_disease, ...)."""
    return list_datasets("diagnosis")


def dataset_named(name: str) -> DatasetInfo:
    """A bundled diagnosis data set by name; anything else is refused, naming the valid ones."""
    valid = [d.name for d in trainable()]
    key = str(name).strip().lower()
    if key not in valid:
        raise unknown_name_error(name[:64], valid, kind="data set (bundled tabular diagnosis data sets only)")
    return get_dataset(key)


def _source(info: DatasetInfo) -> DataSource:
    return DataSource(name=info.name, provenance=info.source, licence=info.licence, site_column=info.site_column, dataset=info)


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class TrainBody(BaseModel):
    """What to train: a bundled data set, a model family and size, a seed; optionally DP-SGD."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"dataset": "wdbc", "size": "small", "epochs": 30}]})

    dataset: Name
    size: ModelSize = DEFAULT_SIZE
    model: Family = Family.TABM
    seed: int = Field(0, ge=0, le=2**31 - 1)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="maximum epochs (early stopping may end sooner); "
                               "default: the CLI's (100 for tabm, 150 for mlp, 100 for ft)")
    members: int = Field(0, ge=0, le=10, description="members of the cross-fitted ensemble; 0: the CLI's default "
                         "(tabm 1: it holds 32 weight-sharing members itself; mlp 5, ft 1)")
    dp_epsilon: float | None = Field(None, gt=0, le=100, allow_inf_nan=False, description="train with DP-SGD to this ε")


class EvaluateBody(BaseModel):
    """Which bundle, on which bundled data set (default: the one it was trained on), which rows."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"bundle_id": "0123456789abcdef", "rows": "held-out"}]})

    bundle_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    dataset: Name | None = None
    rows: Rows | None = Field(None, description="held-out: the bundle's own test split (default on its own data set); "
                              "all: every row of the data set (default on another data set)")
    n_boot: int = Field(1000, ge=100, le=5000)


def parse_body(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """A form's values checked like the JSON body (a bad value is a 422 naming the field)."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'form'}: {err['msg']}" for err in e.errors()[:5])
        raise DataError(f"The form is not valid: {problems}.") from None


# --------------------------------------------------------------------------------------------
# Training jobs


class TrainingProgress(TrainerCallback):
    """What the Trainer reports of a job's run: member (of the ensemble), epoch, max epochs and
    the last epoch's stats as the progress bar shows them."""

    def __init__(self) -> None:
        self.member, self.epoch, self.max_epochs, self.stats = 1, 0, 0, ""

    def on_fit_start(self, *, max_epochs: int, start_epoch: int, member: tuple[int, int]) -> None:
        self.member, self.epoch, self.max_epochs, self.stats = member[0], start_epoch - 1, max_epochs, ""

    def on_epoch_end(self, epoch: int, max_epochs: int, stats: dict[str, float]) -> None:
        self.epoch, self.max_epochs, self.stats = epoch, max_epochs, format_stats(stats)


@dataclass(kw_only=True)
class TrainJob(BackgroundJob):
    body: TrainBody
    dataset: DatasetInfo
    data_sha256: str
    n_members: int
    stage: str = "waiting for the training thread"
    notes: list[str] = field(default_factory=list)
    bundle_id: str | None = None
    bundle_name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] | None = None
    training: TrainingProgress = field(default_factory=TrainingProgress)

    def fraction(self) -> float:
        if self.status is JobStatus.DONE:
            return 1.0
        s = self.training
        if not s.max_epochs:
            return 0.0
        # Early stopping ends a member before max epochs, so this runs a little behind, never ahead.
        return round(min(0.95, ((s.member - 1) + s.epoch / s.max_epochs) / self.n_members), 4)

    def progress(self) -> dict[str, Any]:
        s = self.training
        out: dict[str, Any] = {
            "id": self.id, "status": self.status.value, "stage": self.stage, "fraction": self.fraction(),
            "member": min(s.member, self.n_members), "n_members": self.n_members, "epoch": s.epoch, "max_epochs": s.max_epochs,
            "stats": s.stats, "message": self.message, "notes": self.notes, "created": self.created, "finished": self.finished,
            "seconds": self.seconds, "request": {**self.body.model_dump(mode="json"), "members": self.n_members},
            "data_sha256": self.data_sha256, "bundle_id": self.bundle_id, "bundle_name": self.bundle_name,
            "metrics": self.metrics, "privacy": self.privacy,
        }
        if self.bundle_id:
            out["model_url"] = f"/models/{self.bundle_id}"
            out["report_url"] = f"/models/{self.bundle_id}/report"
        return out


def runner(ctx: ServiceContext) -> JobQueue:
    """This server's training jobs and the one thread that runs them."""
    return job_queue(ctx, NAME, lambda: JobQueue(kind="training", run=run_job, max_jobs=MAX_JOBS,
                                                 max_active_per_user=MAX_ACTIVE_PER_USER, thread_name="medassist-research"))


def _ledger(ctx: ServiceContext) -> PrivacyLedger:
    return PrivacyLedger(path=ctx.settings.privacy_ledger_path, total_epsilon=ctx.settings.privacy_budget_epsilon)


def submit_training(ctx: ServiceContext, principal: Principal, body: TrainBody, *, via: str) -> TrainJob:
    """Check the request (data set, DP budget) now, audit it, and queue the job."""
    info = dataset_named(body.dataset)
    body = body.model_copy(update={"dataset": info.name})
    members = n_members(body.model.value, body.members, dp_epsilon=body.dp_epsilon)
    if body.dp_epsilon is not None and members > 1:
        raise DataError(f"members: an ensemble of {members} would spend the privacy budget {members} times on the same rows; "
                        "use members 1 (or 0) with dp_epsilon.")
    frame = info.load()
    # Refuse now (422 with the message), not in the background: a leaking column, a bad target.
    check_trainable(frame, spec=TabularSpec(target=info.target, id_column=info.id_column, positive_class=info.positive_class),
                    source=info.name)
    sha = frame_fingerprint(frame)
    if body.dp_epsilon is not None:
        _ledger(ctx).check(sha, body.dp_epsilon, source=info.name)
    job = TrainJob(id="t" + secrets.token_hex(10), principal=principal, body=body, dataset=info, data_sha256=sha,
                   n_members=members, via=via)
    runner(ctx).submit(ctx, job, accepted=lambda: ctx.audit(
        principal, action="research.train.submit", bundle_id=None, input_sha256=sha,
        detail={"job": job.id, **job.progress()["request"], "via": via}))
    return job


def _bundle_dir(ctx: ServiceContext, job: TrainJob) -> FsPath:
    b = job.body
    return ctx.settings.bundles_dir / f"{job.dataset.name}-{b.model.value}-{b.size.value}-seed{b.seed}-{job.id}"


def run_job(ctx: ServiceContext, job: TrainJob) -> None:
    """Train through the pipeline, refresh the bundle list, audit the outcome (the job's own thread)."""
    out = _bundle_dir(ctx, job)
    b = job.body

    def work() -> None:
        job.stage = "training"
        info = job.dataset
        spec = diagnosis_spec(target=info.target, model=b.model.value, size=b.size, seed=b.seed, id_column=info.id_column,
                              positive_class=info.positive_class, epochs=b.epochs, ensemble=job.n_members, dp_epsilon=b.dp_epsilon)
        ledger = _ledger(ctx) if b.dp_epsilon is not None else None
        ctx.settings.bundles_dir.mkdir(parents=True, exist_ok=True)
        outcome = train_tabular(info.load(), spec=spec, source=_source(info), out_dir=out, progress=False, ledger=ledger,
                                callbacks=[job.training])
        job.stage = "listing the bundle"
        ctx.catalog.refresh()
        found = next((i for i in KIT.bundles(ctx) if i.path == out), None)
        if found is None:
            found = _identical_bundle(ctx, out)
            job.notes.append(f"The run reproduced bundle {found.bundle_id} exactly (same data, settings and seed); "
                             "no second copy was kept.")
            shutil.rmtree(out, ignore_errors=True)
        job.bundle_id, job.bundle_name = found.bundle_id, found.name
        job.metrics = outcome.metrics.get("metrics", {})
        job.notes += list(outcome.notes)
        job.privacy = outcome.privacy
        job.stage = "done"

    job.run(work, log=log, scrub=lambda message: message.replace(str(out), out.name),
            failure="The training failed on the server; no bundle was written. The error is in the server log.")
    if job.status is JobStatus.FAILED:
        job.stage = "failed"
        if out.exists() and not (out / "bundle.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
    try:
        ctx.audit(job.principal, action=f"research.train.{job.status.value}", bundle_id=job.bundle_id,
                  input_sha256=job.data_sha256, detail={"job": job.id, "dataset": job.dataset.name, "seconds": job.seconds,
                                                        "epsilon": (job.privacy or {}).get("epsilon")})
    except Exception as e:  # noqa: BLE001
        log.error("training job %s: the audit entry could not be written: %s", job.id, type(e).__name__, exc_info=e)


def _identical_bundle(ctx: ServiceContext, out: FsPath) -> BundleInfo:
    meta = json.loads((out / "bundle.json").read_text())
    bundle_id = str(meta.get("files", {}).get("model.safetensors", ""))[:16]
    info = ctx.catalog.get(bundle_id)
    if info is None:
        raise DataError(f"The new bundle {out.name} was written but the service does not list it; ask an administrator.")
    return info


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluations_dir(ctx: ServiceContext) -> FsPath:
    return ctx.settings.home / "research" / "evaluations"


def _bundle_info(ctx: ServiceContext, bundle_id: str) -> BundleInfo:
    info = ctx.catalog.get(bundle_id)
    if info is None:
        raise HTTPException(404, f"No model bundle with id {bundle_id}.")
    if info.task != TASK:
        raise DataError(f"bundle_id: bundle {bundle_id} is a '{info.task}' model; only tabular diagnosis bundles "
                        f"('{TASK}') can be evaluated here (use 'medassist evaluate' for the others).")
    return info


def _held_out_rows(info: BundleInfo, frame: pd.DataFrame, dataset: DatasetInfo, card: dict[str, Any]) -> pd.DataFrame:
    """The bundle's own test split, found again from its splits.json (the data set must be unchanged)."""
    meta = json.loads((info.path / "bundle.json").read_text())
    if meta.get("data_sha256") != frame_fingerprint(frame):
        raise DataError(f"rows: the bundled data set '{dataset.name}' differs from the copy bundle {info.bundle_id} was trained on, "
                        "so its held-out split cannot be found again; evaluate on 'all' rows instead.")
    splits_path = info.path / "splits.json"
    if not splits_path.is_file():
        raise DataError(f"rows: bundle {info.bundle_id} does not record its splits; evaluate on 'all' rows instead.")
    test = json.loads(splits_path.read_text()).get("test")
    target = card.get("target") or dataset.target
    tgt = prepare_target(frame, target=target, positive_class=card.get("positive_class"), missing="drop", source=dataset.name)
    data = frame.loc[tgt.kept].reset_index(drop=True)
    if not isinstance(test, list) or not test or max(test) >= len(data) or min(test) < 0:
        raise DataError(f"rows: the split recorded in bundle {info.bundle_id} does not fit data set '{dataset.name}'.")
    return data.iloc[test]


def evaluate_bundle(ctx: ServiceContext, principal: Principal, body: EvaluateBody, *, via: str) -> dict[str, Any]:
    """Metrics with 95% intervals and an HTML report, kept under an evaluation id; audited."""
    info = _bundle_info(ctx, body.bundle_id)
    own = info.data_source
    name = body.dataset or own
    if body.dataset is None and own not in {d.name for d in trainable()}:
        raise DataError(f"dataset: bundle {info.bundle_id} was trained on '{own}', not a bundled data set; "
                        f"choose one of {', '.join(d.name for d in trainable())}.")
    dataset = dataset_named(name)
    is_own = dataset.name == own
    rows = body.rows or (Rows.HELD_OUT if is_own else Rows.ALL)
    if rows is Rows.HELD_OUT and not is_own:
        raise DataError(f"rows: 'held-out' means the test split of the data set bundle {info.bundle_id} was trained on ('{own}'); "
                        f"on '{dataset.name}' use 'all'.")
    frame = dataset.load()
    card = info.model_card
    notes = []
    if rows is Rows.HELD_OUT:
        frame = _held_out_rows(info, frame, dataset, card)
        notes.append(f"The bundle's own held-out test split of {dataset.name} ({len(frame)} rows, never used in training).")
    elif is_own:
        notes.append(f"Every row of {dataset.name}, including the rows the model was trained on: these figures are optimistic.")
    else:
        notes.append(f"Every row of {dataset.name}: a data set the model was not trained on (external validation).")
    assistant = DiagnosisAssistant(bundle=ctx.catalog.load(info))
    evaluation_id = "e" + secrets.token_hex(10)
    root = evaluations_dir(ctx)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = FsPath(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        result = assistant.evaluate(frame, source=f"{dataset.name} ({rows.value} rows)", n_boot=body.n_boot, report=tmp / "report.html",
                                    include_training_rows=rows is Rows.ALL)  # 'all' means all; the result counts the seen rows
        for k in ("bundle", "report"):  # server paths stay on the server
            result.pop(k, None)
        data_sha256 = frame_fingerprint(frame)
        record = {
            "id": evaluation_id, "created": datetime.now(UTC).isoformat(timespec="seconds"), "by": principal.username,
            "bundle": bundle_ref(info), "dataset": dataset.name, "rows": rows.value, "n_rows": int(len(frame)),
            "n_boot": body.n_boot, "notes": notes, "evaluation": result, "data_sha256": data_sha256,
        }
        (tmp / "result.json").write_text(json.dumps(record, indent=1, default=str))
        audit_id = ctx.audit(principal, action="research.evaluate", bundle_id=info.bundle_id, input_sha256=data_sha256,
                          detail={"evaluation": evaluation_id, "dataset": dataset.name, "rows": rows.value, "n_rows": record["n_rows"],
                                  "via": via})
        os.replace(tmp, root / evaluation_id)  # the evaluation appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**_public(record), "audit_id": audit_id}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    eid = record["id"]
    return {"disclaimer": DISCLAIMER, **record, "metrics": record["evaluation"].get("metrics", {}),
            "report_url": f"/research/evaluations/{eid}/report", "api_report_url": f"/api/v1/research/evaluations/{eid}/report",
            "page_url": f"/research/evaluations/{eid}"}


def load_evaluation(ctx: ServiceContext, evaluation_id: str) -> tuple[dict[str, Any], FsPath]:
    folder = evaluations_dir(ctx) / evaluation_id  # the id matched ^e[0-9a-f]{20}$: never a path of the client's
    try:
        record = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        raise HTTPException(404, f"No evaluation {evaluation_id} on this server.") from None
    return _public(record), folder


def recent_evaluations(ctx: ServiceContext, *, limit: int = 20) -> list[dict[str, Any]]:
    root = evaluations_dir(ctx)
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.iterdir() if p.name.startswith("e") and (p / "result.json").is_file()),
                     key=lambda p: p.stat().st_mtime_ns, reverse=True)[:limit]
    out = []
    for p in folders:
        try:
            out.append(_public(json.loads((p / "result.json").read_text())))
        except (OSError, ValueError):
            continue
    return out


def _report(ctx: ServiceContext, evaluation_id: str) -> FileResponse:
    _, folder = load_evaluation(ctx, evaluation_id)
    return FileResponse(folder / "report.html", media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})


def offer(ctx: ServiceContext) -> dict[str, Any]:
    return {
        "datasets": [{"name": d.name, "title": d.title, "rows": d.n_rows, "target": d.target, "licence": d.licence} for d in trainable()],
        "sizes": [p.value for p in ModelSize if p is not ModelSize.BASE], "models": [f.value for f in Family], "rows": [r.value for r in Rows],
        "bundles": [i.summary() for i in KIT.bundles(ctx)],
    }


# --------------------------------------------------------------------------------------------
# REST API


@api.get("", summary="Data sets, presets and tabular diagnosis bundles on offer; your training jobs")
def api_index(request: Request, principal: Principal = Depends(TRAIN_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    return {**offer(ctx), "jobs": [j.progress() for j in runner(ctx).of_user(principal)]}


@api.post("/train", status_code=202, summary="Train a tabular diagnosis model on a bundled data set (background job)",
          responses=error_responses(429))
async def api_train(request: Request, body: TrainBody, principal: Principal = Depends(TRAIN_API)) -> dict[str, Any]:
    job = await run_in_threadpool(submit_training, get_ctx(request), principal, body, via="api")
    return {**job.progress(), "progress_url": f"/api/v1/research/jobs/{job.id}"}


@api.get("/jobs/{job_id}", summary="Progress of one of your training jobs (the bundle id once done)")
def api_job(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(TRAIN_API)) -> dict[str, Any]:
    return runner(get_ctx(request)).get(job_id, principal).progress()


@api.post("/evaluate", summary="Evaluate a bundle on a bundled data set or its own held-out split (audited)",
          responses=error_responses(404, 503))
async def api_evaluate(request: Request, body: EvaluateBody, principal: Principal = Depends(TRAIN_API)) -> dict[str, Any]:
    return await run_in_threadpool(evaluate_bundle, get_ctx(request), principal, body, via="api")


@api.get("/evaluations/{evaluation_id}/report", summary="An evaluation's HTML report", response_class=FileResponse)
def api_report(request: Request, evaluation_id: str = EVALUATION_ID, principal: Principal = Depends(READ_API)) -> FileResponse:
    return _report(get_ctx(request), evaluation_id)


# --------------------------------------------------------------------------------------------
# Pages


@pages.get("")
def page_index(request: Request, principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    ctx = get_ctx(request)
    return render(request, "research/index.html", offer=offer(ctx), jobs=runner(ctx).of_user(principal),
                  evaluations=recent_evaluations(ctx), max_epochs=MAX_EPOCHS)


@pages.post("/train")
async def page_train(request: Request, dataset: str = Form(..., max_length=64), size: str = Form(DEFAULT_SIZE.value, max_length=16),
                     model: str = Form(Family.TABM.value, max_length=16), seed: str = Form("0", max_length=12), epochs: str = Form("", max_length=12),
                     members: str = Form("0", max_length=4), dp_epsilon: str = Form("", max_length=16),
                     principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    values = {"dataset": dataset, "size": size, "model": model, "seed": seed, "members": members,
              "epochs": epochs.strip() or None, "dp_epsilon": dp_epsilon.strip() or None}
    body = parse_body(TrainBody, values)
    job = await run_in_threadpool(submit_training, get_ctx(request), principal, body, via="web")
    return see_other(request, f"/research/jobs/{job.id}")


@pages.get("/jobs/{job_id}")
def page_job(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    job = runner(get_ctx(request)).get(job_id, principal)
    return render(request, "research/job.html", job=job, progress=job.progress())


@pages.get("/jobs/{job_id}/progress")
def page_job_progress(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    job = runner(get_ctx(request)).get(job_id, principal)
    return render(request, "research/progress.html", job=job, progress=job.progress())


@pages.post("/evaluate")
async def page_evaluate(request: Request, bundle_id: str = Form(..., max_length=16), dataset: str = Form("", max_length=64),
                        rows: str = Form("", max_length=16), n_boot: str = Form("1000", max_length=6),
                        principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    body = parse_body(EvaluateBody, {"bundle_id": bundle_id, "dataset": dataset.strip() or None, "rows": rows.strip() or None,
                                     "n_boot": n_boot})
    result = await run_in_threadpool(evaluate_bundle, get_ctx(request), principal, body, via="web")
    return see_other(request, result["page_url"])


@pages.get("/evaluations/{evaluation_id}")
def page_evaluation(request: Request, evaluation_id: str = EVALUATION_ID, principal: Principal = Depends(TRAIN_PAGE)) -> Response:
    record, _ = load_evaluation(get_ctx(request), evaluation_id)
    return render(request, "research/evaluation.html", ev=record)


@pages.get("/evaluations/{evaluation_id}/report")
def page_report(request: Request, evaluation_id: str = EVALUATION_ID, principal: Principal = Depends(READ_PAGE)) -> FileResponse:
    return _report(get_ctx(request), evaluation_id)


PLUGIN = KIT.plugin(title="Research", summary="Train and evaluate tabular diagnosis models on the bundled data sets (no uploads).",
                    tool=True)
