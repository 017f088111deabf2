"""The screening assistant as a service plugin.

API (``/api/v1/screening``, bearer token, role with ``assistants.use``):
    GET  /                          screening bundles on offer
    POST /{bundle_id}/predict       JSON ``{"smiles": [...]}`` (a small list) → every molecule in input
                                    order: score, uncertainty, applicability domain, QED, filters
    POST /{bundle_id}/jobs          a library upload (.smi, .csv/.tsv, .sdf) → a background job (202)
    GET  /jobs/{job_id}             its progress
    GET  /jobs/{job_id}/results     the ranked hits (JSON, paged) once it is done
Pages (``/screening``): bundles and your jobs; per bundle an upload form and a paste-a-list form;
a job page polls its progress (htmx) and then shows the ranked table with RDKit depictions.

A job screens the library with the assistant (``ScreeningAssistant.screen``: standardise, score,
applicability domain, QED, filters, top-N) batch by batch; each batch reports progress through a
callback, so progress is real and memory stays bounded, and the ranked hits come back as a value. Jobs run one at
a time on one background thread; they and their results live in this server's memory (they
survive page reloads, not a restart) and are visible only to the user who submitted them. The
finished job's hits are recorded (audit entry + encrypted prediction) before they are shown.
"""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints
from starlette.concurrency import run_in_threadpool

from medassist.assistants.screening import ScreeningAssistant
from medassist.data.dictionary import bundle_dictionary
from medassist.data.io.molecules import file_kind, iter_raw_batches, parse_molblock, parse_smiles
from medassist.exceptions import DataError
from medassist.pipeline.screen import ScreenChunk, bundle_targets
from medassist.service.auth import Principal
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import sig
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.downloads import audit_download, csv_bytes, csv_response, prediction_csv_response
from medassist.service.errors import error_responses
from medassist.service.jobs import BackgroundJob, JobQueue, JobStatus, job_queue
from medassist.service.plugin_common import BundlePlugin, bundle_ref, data_uri, scrub_path, see_other
from medassist.service.predictions import record_prediction
from medassist.service.rendering import is_htmx, render
from medassist.service.uploads import CheckedUpload, FileKind, read_upload
from medassist.store.audit import sha256_json

log = logging.getLogger("medassist.service.screening")

NAME = "screening"
TASKS = ("screening",)
KIT = BundlePlugin(name=NAME, tasks=TASKS, noun="screening")
USE_API, USE_PAGE, BUNDLE_ID = KIT.use_api, KIT.use_page, KIT.bundle_id
JOB_ID = Path(pattern=r"^j[0-9a-f]{20}$", description="the id returned when the job was submitted")
FILTERS = ("lipinski", "veber", "pains", "brenk")
Filter = Literal["lipinski", "veber", "pains", "brenk"]
DEFAULT_FILTERS: list[Filter] = ["lipinski", "pains"]
#: Molecules in one synchronous request (the rest belongs in a job).
MAX_SYNC = 200
MAX_TOP = 1000
#: Queued or running jobs one user may have; jobs the server remembers (oldest finished dropped first).
MAX_ACTIVE_PER_USER = 3
MAX_JOBS = 200
#: Rows checked at submission: a library none of whose first rows parse is refused at once.
PROBE_ROWS = 50
LIBRARY_SUFFIXES = {"smi": ".smi", "sdf": ".sdf", "table": ".csv"}

api, pages = KIT.api, KIT.pages


class Rank(StrEnum):
    HIGHEST = "highest"
    LOWEST = "lowest"


Smiles = Annotated[StrictStr, StringConstraints(min_length=1, max_length=1000)]


class PredictBody(BaseModel):
    """A small list of SMILES (one molecule each), optional names, filters and the ranking."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"smiles": ["CCO", "c1ccccc1O"], "filters": ["lipinski"]}]})

    smiles: list[Smiles] = Field(min_length=1, max_length=MAX_SYNC)
    names: list[Annotated[StrictStr, StringConstraints(max_length=200)]] | None = None
    filters: list[Filter] = Field(default_factory=lambda: list(DEFAULT_FILTERS))
    rank: Rank = Rank.HIGHEST


# --------------------------------------------------------------------------------------------
# Screening through the assistant


_info = KIT.info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> ScreeningAssistant:
    return ScreeningAssistant(bundle=ctx.catalog.load(info))


def _score_meaning(assistant: ScreeningAssistant) -> str:
    ex = assistant.bundle.schema.extras
    dd = bundle_dictionary(assistant.bundle)
    targets = ", ".join(dd.label_with_unit(t) if dd.get(t) else t for t in bundle_targets(assistant.bundle))
    if ex["kind"] == "binary":
        return f"probability of the positive class of {targets}"
    return f"predicted {targets}"


#: Library columns that name or identify a molecule, in the order a hit's name is taken from.
NAME_COLUMNS = ("name", "pref_name", "compound_name", "iupac", "title", "molecule_chembl_id", "id", "no.", "cid")


def _name_of(library: dict[str, Any]) -> str:
    by_lower = {str(k).lower(): v for k, v in library.items()}
    for key in NAME_COLUMNS:
        v = by_lower.get(key)
        if v not in (None, ""):
            return str(v)
    return ""


def ranking_warning(hits: list[dict[str, Any]], *, top: int = 20) -> str:
    """A warning when the ensemble's uncertainty is larger than the spread of the top scores:
    the order among them is then mostly noise."""
    head = [h for h in sorted(hits, key=lambda h: h.get("rank", 0))[:top] if h.get("score") is not None]
    spreads = [h["uncertainty"] for h in head if h.get("uncertainty") is not None]
    if len(head) < 3 or not spreads:
        return ""
    scores = [h["score"] for h in head]
    spread = max(scores) - min(scores)
    typical = float(np.median(spreads))
    if typical <= spread:
        return ""
    return (f"The uncertainty of these scores (typically ± {sig(typical)}) is larger than the spread of the top {len(head)} "
            f"scores ({sig(spread)}): their order is not reliable. Treat them as one group, and confirm by measurement.")


def _number(v: Any) -> float | None:
    return None if v is None or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) else float(v)


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def hit_records(hits: pd.DataFrame, *, filters: Sequence[str], targets: list[str]) -> list[dict[str, Any]]:
    """The assistant's hits table (``ScreenResult.hits``) as records (library columns as text)."""
    pairs = [("score", "uncertainty")] if len(targets) == 1 else [(f"score_{t}", f"uncertainty_{t}") for t in targets]
    ours = {"rank", "smiles_canonical", "ad_similarity", "in_domain", "qed", "passes_filters", "input_row",
            *(c for p in pairs for c in p), *(f"{n}_{k}" for n in filters for k in ("pass", "alert"))}
    records = []
    for r in hits.to_dict("records"):
        scores = {t: _number(r[sc]) for t, (sc, _) in zip(targets, pairs)}
        spreads = {t: _number(r[unc]) for t, (_, unc) in zip(targets, pairs)}
        fl = {n: {"pass": bool(r[f"{n}_pass"]), "alert": _text(r[f"{n}_alert"])} for n in filters if f"{n}_pass" in r}
        rec = {
            "rank": int(r["rank"]), "smiles": r["smiles_canonical"], "score": scores[targets[0]], "uncertainty": spreads[targets[0]],
            "scores": scores, "uncertainties": spreads, "ad_similarity": _number(r["ad_similarity"]),
            "in_domain": bool(r["in_domain"]), "qed": _number(r["qed"]), "filters": fl,
            "passes_filters": bool(r["passes_filters"]) if "passes_filters" in r else None, "input_row": int(r["input_row"]),
            "library": {k.removeprefix("library_") if k.startswith("library_") and k.removeprefix("library_") in ours else k: _text(v)
                        for k, v in r.items() if k not in ours},
        }
        rec["name"] = _name_of(rec["library"])
        flags = [] if rec["in_domain"] else ["outside the model's applicability domain"]
        flags += [f"fails {n}" + (f": {f['alert']}" if f["alert"] else "") for n, f in fl.items() if f["pass"] is False]
        rec["flags"] = flags
        records.append(rec)
    return records


def depict(smiles: str) -> str | None:
    """An RDKit 2D depiction as an SVG data URI (an <img>, so the page's CSP does not apply to its styles)."""
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(220, 150)
    drawer.drawOptions().clearBackground = False  # type: ignore[assignment]  # rdkit's stub types this bool property as MolDrawOptions
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return data_uri(drawer.GetDrawingText().encode(), "image/svg+xml")


def predict_list(ctx: ServiceContext, principal: Principal, bundle_id: str, body: PredictBody, *, via: str) -> dict[str, Any]:
    """Screen a small list synchronously: every input back in order, scored or with the reason it was not."""
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    names = body.names or []
    if names and len(names) != len(body.smiles):
        raise DataError(f"request: {len(names)} names for {len(body.smiles)} SMILES; send one name per SMILES or none.")
    filters = list(dict.fromkeys(body.filters))
    inputs = [{"smiles": s, "name": names[i] if names else ""} for i, s in enumerate(body.smiles)]
    library = pd.DataFrame({"smiles": body.smiles, "name": [i["name"] for i in inputs]})
    result = assistant.screen(library, top=len(inputs), filters=filters, rank=body.rank.value, keep_duplicates=True,
                              smiles_column="smiles", workers=1)
    hits = hit_records(result.hits, filters=filters, targets=bundle_targets(assistant.bundle))
    by_row = {h["input_row"]: h for h in hits}
    reasons = {int(row): reason for row, reason in zip(result.skipped["row"], result.skipped["reason"])}
    results = []
    for i, item in enumerate(inputs, start=1):
        hit = by_row.get(i)
        if hit is None:
            results.append({"row": i, "input": item["smiles"], "name": item["name"], "status": f"skipped: {reasons.get(i, 'not scored')}"})
        else:
            hit = {k: v for k, v in hit.items() if k not in ("library", "input_row", "name")}
            results.append({"row": i, "input": item["smiles"], "name": item["name"], "status": "ok", **hit})
    if not hits:
        shown = "; ".join(f"row {r}: {m}" for r, m in list(reasons.items())[:3])
        raise DataError(f"request: none of the {len(inputs)} molecule(s) could be scored ({shown}).")
    rec = record_prediction(ctx, principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=inputs,
                            input_sha256=sha256_json(inputs), output=results, n_rows=len(results), via=via)
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(info), "score_meaning": _score_meaning(assistant), "filters": filters,
            "rank": body.rank.value, "n_scored": len(hits), "n_skipped": len(inputs) - len(hits), "results": results,
            "warning": ranking_warning(hits),
            "audit_id": rec.audit_id, "prediction_id": rec.prediction_id}


# --------------------------------------------------------------------------------------------
# Jobs


@dataclass(kw_only=True)
class Job(BackgroundJob):
    info: BundleInfo
    filename: str
    library: FsPath
    input_sha256: str
    top: int
    filters: list[str]
    rank: Rank
    n_total: int
    n_done: int = 0
    hits: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    score_meaning: str = ""
    audit_id: int | None = None
    prediction_id: int | None = None
    depictions: dict[int, str | None] = field(default_factory=dict)

    def progress(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status.value, "n_total": self.n_total, "n_done": self.n_done,
                "fraction": round(self.n_done / self.n_total, 4) if self.n_total else 0.0, "message": self.message,
                "file": self.filename, "bundle": bundle_ref(self.info), "created": self.created, "finished": self.finished,
                "top": self.top, "filters": self.filters, "rank": self.rank.value, "n_hits": len(self.hits) if self.status is JobStatus.DONE else None}


def registry(ctx: ServiceContext) -> JobQueue:
    """This server's screening jobs and the one thread that runs them."""
    return job_queue(ctx, NAME, lambda: JobQueue(kind="screening", run=run_job, max_jobs=MAX_JOBS,
                                                 max_active_per_user=MAX_ACTIVE_PER_USER, thread_name="medassist-screening"))


def run_job(ctx: ServiceContext, job: Job) -> None:
    """Screen the library batch by batch (progress per batch), record, keep the hits (the job's own thread)."""

    def work() -> None:
        assistant = _assistant(ctx, job.info)
        job.score_meaning = _score_meaning(assistant)
        chunk = int(min(2000, max(100, math.ceil(job.n_total / 20))))

        def advance(done: ScreenChunk) -> None:
            job.n_done = min(job.n_total, done.n_read)

        result = assistant.screen(job.library, top=job.top, filters=job.filters, rank=job.rank.value, keep_duplicates=False,
                                  workers=1, batch_size=chunk, keep_skipped=False, on_progress=advance)
        merged = hit_records(result.hits, filters=job.filters, targets=bundle_targets(assistant.bundle))
        s = result.summary
        job.summary = {"n_read": s.n_read, "n_scored": s.n_scored, "n_skipped": s.n_skipped, "skipped_by_reason": s.skipped_by_reason,
                       "skipped_examples": s.skipped_examples, "n_duplicates": s.n_duplicates, "n_failed_filters": s.n_failed_filters,
                       "n_hits": len(merged)}
        text = job.library.read_bytes().decode("utf-8-sig", "replace")
        rec = record_prediction(ctx, job.principal, assistant=NAME, bundle_id=job.info.bundle_id, task=job.info.task,
                                input_value=text, input_sha256=job.input_sha256, output={"summary": job.summary, "hits": merged},
                                n_rows=s.n_read, via=job.via)
        job.audit_id, job.prediction_id = rec.audit_id, rec.prediction_id
        job.hits = merged
        job.n_done = job.n_total

    try:
        job.run(work, log=log, scrub=lambda message: scrub_path(message, job.library, job.filename),
                failure="The job failed on the server; nothing was recorded. The error is in the server log.")
    finally:
        shutil.rmtree(job.library.parent, ignore_errors=True)


def probe_library(path: FsPath, *, shown: str) -> int:
    """Count the molecules (streaming, no parsing) and refuse a library whose first rows are all unusable."""
    n = 0
    first: list[tuple[int, str, str]] = []
    try:
        for batch in iter_raw_batches(path, batch_size=5000):
            n += len(batch.rows)
            for row, text in zip(batch.rows, batch.texts):
                if len(first) < PROBE_ROWS:
                    first.append((row, text, batch.kind))
    except DataError as e:
        raise DataError(scrub_path(str(e), path, shown).replace("pass --smiles-column COLUMN", "name that column 'smiles'")) from None
    if n == 0:
        raise DataError(f"{shown}: no molecules found.")
    reasons = []
    for row, text, kind in first:
        mol, reason = parse_smiles(text) if kind == "smiles" else parse_molblock(text)
        if mol is not None:
            return n
        reasons.append(f"row {row}: {reason}")
    raise DataError(f"{shown}: none of the first {len(first)} molecule(s) could be read ({'; '.join(reasons[:3])}).")


def _filters_of(values: list[str]) -> list[str]:
    out = []
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in FILTERS:
                raise DataError(f"filters: {name[:40]!r} is not a filter; expected any of {', '.join(FILTERS)}.")
            out.append(name)
    return list(dict.fromkeys(out))


def submit_job(ctx: ServiceContext, principal: Principal, bundle_id: str, upload: CheckedUpload, *, top: int, filters: list[str],
               rank: Rank, via: str) -> Job:
    info = _info(ctx, bundle_id)
    try:
        kind = file_kind(upload.filename)
    except DataError:
        raise DataError(f"{upload.filename}: expected a molecule library named .smi, .csv/.tsv or .sdf.") from None
    if upload.filename.lower().endswith(".gz"):
        raise DataError(f"{upload.filename}: compressed libraries are not accepted here; upload the plain file.")
    root = ctx.settings.home / "work"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = FsPath(tempfile.mkdtemp(prefix="screen-job-", dir=root))
    suffix = ".tsv" if upload.filename.lower().endswith((".tsv", ".tab")) else LIBRARY_SUFFIXES[kind]
    library = folder / f"library{suffix}"
    try:
        library.write_bytes(upload.data)
        n = probe_library(library, shown=upload.filename)
        job = Job(id="j" + secrets.token_hex(10), principal=principal, info=info, filename=upload.filename, library=library,
                  input_sha256=upload.sha256, top=top, filters=filters, rank=rank, via=via, n_total=n)
        registry(ctx).submit(ctx, job)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def job_results(job: Job, *, page: int, per_page: int, depictions: bool = False) -> dict[str, Any]:
    if job.status is JobStatus.FAILED:
        raise HTTPException(422, f"Screening job {job.id} failed: {job.message}")
    if job.status is not JobStatus.DONE:
        raise HTTPException(409, f"Screening job {job.id} is {job.status.value} ({job.n_done:,} of {job.n_total:,} molecules); "
                                 "ask for its results when it is done.")
    n = len(job.hits)
    pages_total = max(1, math.ceil(n / per_page))
    if page > pages_total:
        raise HTTPException(404, f"Page {page} does not exist; the results have {pages_total} page(s) of {per_page}.")
    hits = job.hits[(page - 1) * per_page: page * per_page]
    if depictions:
        for h in hits:
            if h["rank"] not in job.depictions:
                job.depictions[h["rank"]] = depict(h["smiles"])
        hits = [{**h, "depiction": job.depictions[h["rank"]]} for h in hits]
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(job.info), "job": job.progress(), "score_meaning": job.score_meaning,
            "warning": ranking_warning(job.hits),
            "summary": job.summary, "page": page, "per_page": per_page, "pages": pages_total, "n_hits": n, "hits": hits,
            "audit_id": job.audit_id, "prediction_id": job.prediction_id}


# --------------------------------------------------------------------------------------------
# REST API (job routes first: "/jobs/..." must not be read as a bundle id)


KIT.add_index_routes(summary="Screening model bundles on offer", template="screening/index.html",
                     page_extra=lambda ctx, principal: {"jobs": registry(ctx).of_user(principal)})


@api.get("/jobs/{job_id}", summary="Progress of one of your screening jobs")
def api_job(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    return registry(get_ctx(request)).get(job_id, principal).progress()


@api.get("/jobs/{job_id}/results", summary="Ranked hits of a finished screening job (paged)", responses=error_responses(409))
def api_job_results(request: Request, job_id: str = JOB_ID, page: int = Query(1, ge=1, le=100_000),
                    per_page: int = Query(50, ge=1, le=500), principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    job = registry(get_ctx(request)).get(job_id, principal)
    return job_results(job, page=page, per_page=per_page)


def job_csv(ctx: ServiceContext, principal: Principal, job_id: str) -> Response:
    """A finished job's ranked hits as CSV (the caller's own job; formula cells neutralised; audited)."""
    job = registry(ctx).get(job_id, principal)
    job_results(job, page=1, per_page=1)  # 409 while running, 422 when it failed
    rows = []
    for h in job.hits:
        row: dict[str, Any] = {"rank": h["rank"], "name": h.get("name", ""), "smiles": h["smiles"]}
        for t, s in (h.get("scores") or {}).items():
            row[f"score {t}"] = s
            row[f"uncertainty {t}"] = (h.get("uncertainties") or {}).get(t)
        row.update({"in applicability domain": "yes" if h["in_domain"] else "no", "similarity to training": h["ad_similarity"],
                    "QED": h["qed"], "flags": "; ".join(h.get("flags") or []), "library row": h["input_row"]})
        for k, v in (h.get("library") or {}).items():
            row.setdefault(f"library {k}", v)
        rows.append(row)
    data = csv_bytes(ctx, rows)
    audit_download(ctx, principal, assistant=NAME, bundle_id=job.info.bundle_id, what=f"job {job.id}", n_rows=len(rows))
    return csv_response(data, filename=f"screening-{job.id}.csv")


@api.get("/jobs/{job_id}/results.csv", summary="Ranked hits of a finished screening job as CSV (audited)",
         response_class=Response, responses={200: {"content": {"text/csv": {}}}, **error_responses(409)})
def api_job_csv(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(USE_API)) -> Response:
    return job_csv(get_ctx(request), principal, job_id)


@api.post("/{bundle_id}/predict", summary="Score a small list of SMILES now (audited)")
def api_predict(request: Request, body: PredictBody, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    return predict_list(get_ctx(request), principal, bundle_id, body, via="api")


@api.post("/{bundle_id}/jobs", status_code=202, summary="Screen an uploaded library in the background", responses=error_responses(429))
async def api_submit(request: Request, file: UploadFile = File(...), bundle_id: str = BUNDLE_ID,
                     top: int = Query(100, ge=1, le=MAX_TOP), filters: str = Query(",".join(DEFAULT_FILTERS), max_length=200,
                     description="comma-separated: lipinski, veber, pains, brenk (empty: none)"),
                     rank: Rank = Query(Rank.HIGHEST), principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    names = _filters_of([filters])
    upload = await read_upload(file, expected={FileKind.CSV}, max_bytes=ctx.settings.max_upload_bytes)
    job = await run_in_threadpool(submit_job, ctx, principal, bundle_id, upload, top=top, filters=names, rank=rank, via="api-job")
    return {**job.progress(), "progress_url": f"/api/v1/screening/jobs/{job.id}", "results_url": f"/api/v1/screening/jobs/{job.id}/results"}


# --------------------------------------------------------------------------------------------
# Pages


@pages.get("/jobs/{job_id}")
def page_job(request: Request, job_id: str = JOB_ID, page: int = Query(1, ge=1, le=100_000),
             principal: Principal = Depends(USE_PAGE)) -> Response:
    job = registry(get_ctx(request)).get(job_id, principal)
    results = job_results(job, page=page, per_page=25, depictions=True) if job.status is JobStatus.DONE else None
    return render(request, "screening/job.html", job=job, progress=job.progress(), results=results)


@pages.get("/jobs/{job_id}/results.csv")
def page_job_csv(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    """The download link on the job page: the browser's session, not a bearer token."""
    return job_csv(get_ctx(request), principal, job_id)


@pages.get("/predictions/{prediction_id}.csv")
def page_prediction_csv(request: Request, prediction_id: int = Path(ge=1, le=2**62), principal: Principal = Depends(USE_PAGE)) -> Response:
    """A pasted list's scores as CSV (your own prediction; audited)."""
    return prediction_csv_response(get_ctx(request), principal, prediction_id, assistant=NAME, rows=_prediction_rows)


def _prediction_rows(ctx: ServiceContext, bundle_id: str, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in output:
        row = {"row": r.get("row"), "name": r.get("name", ""), "input": r.get("input"), "status": r.get("status")}
        if r.get("status") == "ok":
            row.update({"rank": r.get("rank"), "score": r.get("score"), "uncertainty": r.get("uncertainty"),
                        "in applicability domain": "yes" if r.get("in_domain") else "no", "QED": r.get("qed"),
                        "flags": "; ".join(r.get("flags") or [])})
        rows.append(row)
    return rows


@pages.get("/jobs/{job_id}/progress")
def page_job_progress(request: Request, job_id: str = JOB_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    job = registry(get_ctx(request)).get(job_id, principal)
    results = job_results(job, page=1, per_page=25, depictions=True) if job.status is JobStatus.DONE else None
    return render(request, "screening/progress.html", job=job, progress=job.progress(), results=results)


@pages.get("/{bundle_id}")
def page_form(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    return render(request, "screening/form.html", info=info, card=info.model_card, filters=FILTERS, defaults=DEFAULT_FILTERS,
                  result=None, max_sync=MAX_SYNC, max_top=MAX_TOP)


@pages.post("/{bundle_id}/jobs")
async def page_submit(request: Request, bundle_id: str = BUNDLE_ID, file: UploadFile = File(...),
                      top: int = Form(100, ge=1, le=MAX_TOP), rank: Rank = Form(Rank.HIGHEST),
                      principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    names = _filters_of([v for v in form.getlist("filters") if isinstance(v, str)])
    upload = await read_upload(file, expected={FileKind.CSV}, max_bytes=ctx.settings.max_upload_bytes)
    job = await run_in_threadpool(submit_job, ctx, principal, bundle_id, upload, top=top, filters=names, rank=rank, via="web-job")
    return see_other(request, f"/screening/jobs/{job.id}")


def _parse_pasted(text: str) -> tuple[list[str], list[str]]:
    smiles, names = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first, _, rest = line.partition(" ") if "\t" not in line else line.partition("\t")
        smiles.append(first[:1000])
        names.append(rest.strip()[:200])
    if not smiles:
        raise DataError("molecules: paste at least one SMILES (one per line, optionally followed by a name).")
    if len(smiles) > MAX_SYNC:
        raise DataError(f"molecules: {len(smiles)} lines; at most {MAX_SYNC} are scored at once (upload a library for more).")
    return smiles, names


@pages.post("/{bundle_id}/predict")
async def page_predict(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    text = form.get("molecules")
    smiles, names = _parse_pasted(text if isinstance(text, str) else "")
    chosen = form.get("rank")
    rank = chosen if isinstance(chosen, str) and chosen in ("highest", "lowest") else "highest"
    body = PredictBody(smiles=smiles, names=names, filters=_filters_of([v for v in form.getlist("filters") if isinstance(v, str)]),
                       rank=Rank(rank))
    result = await run_in_threadpool(predict_list, ctx, principal, bundle_id, body, via="web")
    for r in result["results"]:
        r["depiction"] = depict(r["smiles"]) if r["status"] == "ok" else None
    info = _info(ctx, bundle_id)
    if is_htmx(request):
        return render(request, "screening/result.html", result=result, info=info)
    return render(request, "screening/form.html", info=info, card=info.model_card, filters=FILTERS, defaults=DEFAULT_FILTERS,
                  result=result, max_sync=MAX_SYNC, max_top=MAX_TOP)


PLUGIN = KIT.plugin(
    title="Screening", summary="A molecule library → a ranked shortlist with uncertainty, applicability domain and filter flags.",
)
