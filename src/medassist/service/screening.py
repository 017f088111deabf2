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

A job reads the library in chunks, screens each chunk with the assistant
(``ScreeningAssistant.screen``: standardise, score, applicability domain, QED, filters, top-N)
and merges the chunks' shortlists, so progress is real and memory stays bounded. Jobs run one at
a time on one background thread; they and their results live in this server's memory (they
survive page reloads, not a restart) and are visible only to the user who submitted them. The
finished job's hits are recorded (audit entry + encrypted prediction) before they are shown.
"""

from __future__ import annotations

import csv
import logging
import math
import secrets
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints
from starlette.concurrency import run_in_threadpool

from medassist.assistants.screening import ScreeningAssistant
from medassist.data.io.molecules import RawBatch, file_kind, iter_raw_batches, parse_molblock, parse_smiles
from medassist.data.io.tables import restore_formulas
from medassist.data.dictionary import bundle_dictionary
from medassist.exceptions import DataError, MedassistError
from medassist.service.auth import Principal, Require, Surface
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import sig
from medassist.service.downloads import audit_download, csv_bytes, csv_response, prediction_csv_response
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.errors import error_responses
from medassist.service.jobs import JobQueue, job_queue
from medassist.service.permissions import Permission
from medassist.service.plugin_common import bundle_ref, data_uri, scratch_dir, scrub_path
from medassist.service.plugins import TEMPLATES, AssistantPlugin
from medassist.service.predictions import record_prediction
from medassist.service.rendering import is_htmx, render
from medassist.service.uploads import CheckedUpload, FileKind, read_upload
from medassist.store.audit import sha256_json

log = logging.getLogger("medassist.service.screening")

NAME = "screening"
TASKS = ("screening",)
USE_API = Require(Permission.USE_ASSISTANTS, surface=Surface.API)
USE_PAGE = Require(Permission.USE_ASSISTANTS, surface=Surface.PAGE)
BUNDLE_ID = Path(pattern=r"^[0-9a-f]{16}$", description="16 hex digits (from GET /api/v1/screening)")
JOB_ID = Path(pattern=r"^j[0-9a-f]{20}$", description="the id returned when the job was submitted")
FILTERS = ("lipinski", "veber", "pains", "brenk")
DEFAULT_FILTERS = ["lipinski", "pains"]
#: Molecules in one synchronous request (the rest belongs in a job).
MAX_SYNC = 200
MAX_TOP = 1000
#: Queued or running jobs one user may have; jobs the server remembers (oldest finished dropped first).
MAX_ACTIVE_PER_USER = 3
MAX_JOBS = 200
#: Rows checked at submission: a library none of whose first rows parse is refused at once.
PROBE_ROWS = 50
LIBRARY_SUFFIXES = {"smi": ".smi", "sdf": ".sdf", "table": ".csv"}

api = APIRouter()
pages = APIRouter()


class Rank(StrEnum):
    HIGHEST = "highest"
    LOWEST = "lowest"


Filter = Literal["lipinski", "veber", "pains", "brenk"]
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


def _info(ctx: ServiceContext, bundle_id: str) -> BundleInfo:
    info = ctx.catalog.get(bundle_id)
    if info is None or info.task not in TASKS:
        raise HTTPException(404, f"No screening model bundle with id {bundle_id}.")
    return info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> ScreeningAssistant:
    return ScreeningAssistant(bundle=ctx.catalog.load(info))


def _score_meaning(assistant: ScreeningAssistant) -> str:
    ex = assistant.bundle.schema.extras
    dd = bundle_dictionary(assistant.bundle)
    targets = ", ".join(dd.label_with_unit(t) if dd.get(t) else t for t in ex["targets"])
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


def _bool(v: str) -> bool | None:
    return {"true": True, "false": False}.get(v.strip().lower())


def _float(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def read_hits(path: FsPath, *, filters: list[str], targets: list[str]) -> list[dict[str, Any]]:
    """The assistant's hits CSV as typed records (library columns kept as text)."""
    frame = restore_formulas(pd.read_csv(path, dtype=str, keep_default_na=False))  # written by write_table
    pairs = [("score", "uncertainty")] if len(targets) == 1 else [(f"score_{t}", f"uncertainty_{t}") for t in targets]
    ours = {"rank", "smiles_canonical", "ad_similarity", "in_domain", "qed", "passes_filters", "input_row",
            *(c for p in pairs for c in p), *(f"{n}_{k}" for n in filters for k in ("pass", "alert"))}
    records = []
    for r in frame.to_dict("records"):
        scores = {t: _float(r[sc]) for t, (sc, _) in zip(targets, pairs)}
        spreads = {t: _float(r[unc]) for t, (_, unc) in zip(targets, pairs)}
        fl = {n: {"pass": _bool(r[f"{n}_pass"]), "alert": r[f"{n}_alert"]} for n in filters if f"{n}_pass" in r}
        rec = {
            "rank": int(r["rank"]), "smiles": r["smiles_canonical"], "score": scores[targets[0]], "uncertainty": spreads[targets[0]],
            "scores": scores, "uncertainties": spreads, "ad_similarity": _float(r["ad_similarity"]),
            "in_domain": r["in_domain"] == "yes", "qed": _float(r["qed"]), "filters": fl,
            "passes_filters": _bool(r["passes_filters"]) if "passes_filters" in r else None, "input_row": int(r["input_row"]),
            "library": {k.removeprefix("library_") if k.startswith("library_") and k.removeprefix("library_") in ours else k: v
                        for k, v in r.items() if k not in ours},
        }
        rec["name"] = _name_of(rec["library"])
        flags = [] if rec["in_domain"] else ["outside the model's applicability domain"]
        flags += [f"fails {n}" + (f": {f['alert']}" if f["alert"] else "") for n, f in fl.items() if f["pass"] is False]
        rec["flags"] = flags
        records.append(rec)
    return records


def screen_file(assistant: ScreeningAssistant, library: FsPath, work: FsPath, *, top: int, filters: list[str], rank: Rank,
                keep_duplicates: bool, smiles_column: str | None = None, skipped: bool = False):
    """One call of the assistant: (summary, hit records, skipped rows or None)."""
    hits, skipped_out = work / "hits.csv", (work / "skipped.csv" if skipped else None)
    summary = assistant.screen(library, out=hits, top=top, filters=filters, rank=rank.value, keep_duplicates=keep_duplicates,
                               smiles_column=smiles_column, workers=1, progress=False, skipped_out=skipped_out)
    records = read_hits(hits, filters=filters, targets=list(assistant.bundle.schema.extras["targets"]))
    rows = None
    if skipped_out is not None:
        rows = restore_formulas(pd.read_csv(skipped_out, dtype=str, keep_default_na=False)).to_dict("records")
    return summary, records, rows


def depict(smiles: str) -> str | None:
    """An RDKit 2D depiction as an SVG data URI (an <img>, so the page's CSP does not apply to its styles)."""
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(220, 150)
    drawer.drawOptions().clearBackground = False
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
    with scratch_dir(ctx, "screen-") as work:
        lib = work / "molecules.csv"
        pd.DataFrame({"smiles": body.smiles, "name": [i["name"] for i in inputs]}).to_csv(lib, index=False, quoting=csv.QUOTE_ALL)
        summary, hits, skipped = screen_file(assistant, lib, work, top=len(inputs), filters=filters, rank=body.rank,
                                             keep_duplicates=True, smiles_column="smiles", skipped=True)
    by_row = {h["input_row"]: h for h in hits}
    reasons = {int(s["row"]): s["reason"] for s in skipped or []}
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


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(kw_only=True)
class Job:
    id: str
    principal: Principal
    info: BundleInfo
    filename: str
    library: FsPath
    input_sha256: str
    top: int
    filters: list[str]
    rank: Rank
    via: str
    n_total: int
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    status: JobStatus = JobStatus.QUEUED
    n_done: int = 0
    message: str = ""
    finished: str | None = None
    seconds: float | None = None
    hits: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    score_meaning: str = ""
    audit_id: int | None = None
    prediction_id: int | None = None
    depictions: dict[int, str | None] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    def progress(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status.value, "n_total": self.n_total, "n_done": self.n_done,
                "fraction": round(self.n_done / self.n_total, 4) if self.n_total else 0.0, "message": self.message,
                "file": self.filename, "bundle": bundle_ref(self.info), "created": self.created, "finished": self.finished,
                "top": self.top, "filters": self.filters, "rank": self.rank.value, "n_hits": len(self.hits) if self.status is JobStatus.DONE else None}


def registry(ctx: ServiceContext) -> JobQueue:
    """This server's screening jobs and the one thread that runs them."""
    return job_queue(ctx, NAME, lambda: JobQueue(kind="screening", run=run_job, max_jobs=MAX_JOBS,
                                                 max_active_per_user=MAX_ACTIVE_PER_USER, thread_name="medassist-screening"))


def _write_chunk(batch: RawBatch, folder: FsPath) -> tuple[FsPath, str | None]:
    """A chunk of the library as a file the assistant reads (its rows numbered 1..n)."""
    if batch.kind == "molblock":
        path = folder / "chunk.sdf"
        with path.open("w", encoding="utf-8") as fh:
            for block, props in zip(batch.texts, batch.columns):
                fh.write(block.rstrip("\n") + "\n")
                for k, v in props.items():
                    if k != "name":
                        fh.write(f">  <{k}>\n{v}\n\n")
                fh.write("$$$$\n")
        return path, None
    path = folder / "chunk.csv"
    cols = pd.DataFrame(batch.columns, dtype=str).fillna("")
    cols.columns = [f"library_{c}" if str(c).lower() == "smiles" else str(c) for c in cols.columns]
    frame = pd.concat([pd.DataFrame({"smiles": batch.texts}), cols.reset_index(drop=True)], axis=1)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_ALL)
    return path, "smiles"


def run_job(ctx: ServiceContext, job: Job) -> None:
    """Screen chunk by chunk, merge the shortlists, record, keep the hits (the job's own thread)."""
    t0 = time.perf_counter()
    job.status = JobStatus.RUNNING
    sign = 1.0 if job.rank is Rank.HIGHEST else -1.0
    try:
        assistant = _assistant(ctx, job.info)
        job.score_meaning = _score_meaning(assistant)
        chunk = int(min(2000, max(100, math.ceil(job.n_total / 20))))
        merged: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        n_read = n_scored = n_failed = n_dup = 0
        for batch in iter_raw_batches(job.library, batch_size=chunk):
            with tempfile.TemporaryDirectory(dir=job.library.parent) as tmp:
                path, col = _write_chunk(batch, FsPath(tmp))
                summary, hits, _ = screen_file(assistant, path, FsPath(tmp), top=job.top, filters=job.filters, rank=job.rank,
                                               keep_duplicates=False, smiles_column=col)
            for h in hits:
                h["input_row"] = batch.rows[h["input_row"] - 1]
            n_read += summary.n_read
            n_scored += summary.n_scored
            n_failed += summary.n_failed_filters
            n_dup += summary.n_duplicates
            for cat, n in summary.skipped_by_reason.items():
                counts[cat] += n
                for ex in summary.skipped_examples.get(cat, []):
                    if len(examples.setdefault(cat, [])) < 3:
                        row, _, rest = ex.partition(": ")
                        k = int(row.removeprefix("row ")) if row.startswith("row ") and row[4:].isdigit() else None
                        examples[cat].append(f"row {batch.rows[k - 1]}: {rest}" if k and k <= len(batch.rows) else ex)
            merged, dropped = _merge(merged, hits, top=job.top, sign=sign)
            n_dup += dropped  # a structure met again in a later chunk (among the shortlisted ones)
            job.n_done = min(job.n_total, job.n_done + len(batch.rows))
        for k, h in enumerate(merged, start=1):
            h["rank"] = k
        job.summary = {"n_read": n_read, "n_scored": n_scored, "n_skipped": sum(counts.values()), "skipped_by_reason": dict(counts),
                       "skipped_examples": examples, "n_duplicates": n_dup, "n_failed_filters": n_failed, "n_hits": len(merged)}
        text = job.library.read_bytes().decode("utf-8-sig", "replace")
        rec = record_prediction(ctx, job.principal, assistant=NAME, bundle_id=job.info.bundle_id, task=job.info.task,
                                input_value=text, input_sha256=job.input_sha256, output={"summary": job.summary, "hits": merged},
                                n_rows=n_read, via=job.via)
        job.audit_id, job.prediction_id = rec.audit_id, rec.prediction_id
        job.hits = merged
        job.n_done = job.n_total
        job.status = JobStatus.DONE
    except MedassistError as e:
        job.message = scrub_path(str(e), job.library, job.filename)
        job.status = JobStatus.FAILED
    except Exception as e:  # noqa: BLE001 (a job must end in a state the user sees; the error goes to the log)
        log.error("screening job %s failed: %s", job.id, type(e).__name__, exc_info=e)
        job.message = "The job failed on the server; nothing was recorded. The error is in the server log."
        job.status = JobStatus.FAILED
    finally:
        job.seconds = round(time.perf_counter() - t0, 2)
        job.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        shutil.rmtree(job.library.parent, ignore_errors=True)


def _merge(merged: list[dict[str, Any]], new: list[dict[str, Any]], *, top: int, sign: float) -> tuple[list[dict[str, Any]], int]:
    """The best ``top`` of two shortlists, and how many of ``new`` were structures already listed."""
    seen = {h["smiles"] for h in merged}
    out, dropped = list(merged), 0
    for h in new:
        if h["smiles"] in seen:
            dropped += 1
            continue
        seen.add(h["smiles"])
        out.append(h)

    def key(h: dict[str, Any]) -> tuple[int, float, int]:
        s = h["score"]
        return (0, -sign * s, h["input_row"]) if s is not None else (1, 0.0, h["input_row"])

    out.sort(key=key)
    return out[:top], dropped


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


@api.get("", summary="Screening model bundles on offer")
def api_list(request: Request, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    return {"disclaimer": DISCLAIMER, "models": [i.summary() for i in ctx.catalog.list(tasks=TASKS)]}


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


@pages.get("")
def page_index(request: Request, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    return render(request, "screening/index.html", bundles=ctx.catalog.list(tasks=TASKS), jobs=registry(ctx).of_user(principal))


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
    target = f"/screening/jobs/{job.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


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
    rank = form.get("rank") if form.get("rank") in ("highest", "lowest") else "highest"
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


PLUGIN = AssistantPlugin(
    name=NAME, title="Screening", summary="A molecule library → a ranked shortlist with uncertainty, applicability domain and filter flags.",
    tasks=TASKS, permission=Permission.USE_ASSISTANTS, api_router=api, page_router=pages, templates_dir=TEMPLATES / NAME,
)
