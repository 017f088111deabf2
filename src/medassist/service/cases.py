"""The cases assistant as a service plugin: "which earlier cases resemble this one, what happened
to them, and what drives the outcome?"

API (``/api/v1/cases``, bearer token, role with ``cases.deidentified``: clinicians, researchers):
    GET  /                                  data sets in the case store and their case counts
    GET  /search?dataset=&q=&limit=&offset=  case summaries; ``q`` is a case id (clinicians: any
                                            identifier, see ``CaseStore.resolve``) or a condition
                                            code prefix / text
    GET  /conditions?dataset=&limit=        condition codes stored for a data set (all when none given),
                                            with how many cases have each
    GET  /cohort?dataset=&where=&by=        Kaplan-Meier per group: n, events, median survival with
                                            95% CI, log-rank test, Cox hazard ratios
    GET  /cohort/km.png?dataset=&where=&by= the Kaplan-Meier plot (PNG)
    GET  /{case_ref}/risk           this patient's predicted survival curve against the cohort, and its top factors
    POST /code                              ``{"text": ...}`` → de-identified text + ICD-10-CM
                                            suggestions (nothing stored; audited by hash)
    GET  /{case_ref}?identified=false       one case; ``identified=true`` needs ``cases.identified``
    GET  /{case_ref}/similar?k=10&outcome_aware=false   the k most similar cases, with the reasons
Pages (``/cases``): search with a data set picker (the condition codes it suggests are the chosen
data set's), a case page (similar cases load by htmx), a cohort page with the Kaplan-Meier plot
inline (the picker swaps in the chosen data set's columns, in the words of its data dictionary:
``service/cases_words.py``), and a note-coding form.

Privacy: the de-identified view (researchers; clinicians by default) has case ids, capped ages
and day offsets only. Researchers look cases up by case id alone: answering an MRN or a source id
would tie a person to a record. Every search, case view, similar-case query, cohort and plot
export is in the audit log with a SHA-256 of the query, never the query; no PHI reaches a log line.

Models: similar cases need a survival model and patient embedding per data set. A
``cases-survival`` bundle trained on that data set (``medassist cases train-survival``, data source
``case store (DATASET)``) is used when the catalog has one; else a small model is fitted in-process
at first use (seconds for a few hundred cases) on one background thread. Both are cached per data
set and store revision (case count, newest import), so a new import refits and nothing heavy runs
per request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.concurrency import run_in_threadpool

from medassist.assistants.case_words import case_dictionary, column_options, condition_counts, endpoint_of, filter_examples
from medassist.assistants.cases import CaseAnalysis
from medassist.assistants.coding import deidentify_note, suggest_codes
from medassist.exceptions import DataError, MedassistError
from medassist.options import unknown_name_error
from medassist.pipeline.survival import TASK as SURVIVAL_TASK
from medassist.privacy.crypto import IdentifierHasher
from medassist.service.auth import PageDenied, Principal, Require, Surface
from medassist.service.bundles import BundleInfo
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.errors import error_responses
from medassist.service.permissions import Permission
from medassist.service.plugin_common import data_uri, scratch_dir
from medassist.service.plugins import TEMPLATES, AssistantPlugin
from medassist.service.rendering import is_htmx, render
from medassist.store.audit import sha256_json
from medassist.store.cases import CaseStore

log = logging.getLogger("medassist.service.cases")

NAME = "cases"
TASKS = (SURVIVAL_TASK,)
READ_API = Require(Permission.CASES_DEIDENTIFIED, surface=Surface.API)
READ_PAGE = Require(Permission.CASES_DEIDENTIFIED, surface=Surface.PAGE)
CASE_ID = re.compile(r"^c[0-9a-f]{16}$")
CASE_REF = Path(pattern=r"^[A-Za-z0-9._:\-]{1,128}$", description="a case id; clinicians: also an MRN, a source id or DATASET:ID")
#: Longest note the coding route accepts (characters); coding time grows with the text.
MAX_NOTE = 20_000
#: How long an API call waits for a data set's model to be fitted before answering 503.
FIT_WAIT_S = 120.0
MAX_COHORTS = 16

api = APIRouter()
pages = APIRouter()

DatasetName = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("dataset", mode="before", check_fields=False)
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:  # a form's "all data sets" option sends dataset=
        return None if isinstance(v, str) and not v.strip() else v


class SearchQuery(_Query):
    """A data set (optional), a query (optional) and a page of results."""

    dataset: DatasetName | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] = ""
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=10_000_000)


class CohortQuery(_Query):
    """A data set, a filter (``age > 60 and sex == "female"``) and the column to compare groups by."""

    # One cohort is one data set (time units and columns differ between them): optional only
    # while the store holds one data set; with several, leaving it out is a 422 naming them.
    dataset: DatasetName | None = Field(None, description="The data set to analyse (GET /api/v1/cases lists them). Required when the "
                                                          "case store holds more than one; may be left out when it holds one.")
    where: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    by: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = ""


class CaseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identified: bool = False


class SimilarQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=1, le=100)
    outcome_aware: bool = False


class CodeBody(BaseModel):
    """A clinical note; it is de-identified before it is coded, and nothing of it is stored."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Type 2 diabetes mellitus with diabetic chronic kidney disease. No evidence of pneumonia.", "top": 10}]})

    text: str = Field(min_length=1, max_length=MAX_NOTE)
    top: int = Field(10, ge=1, le=50)


# --------------------------------------------------------------------------------------------
# State: the store on the service's database, frames and models per data set


@dataclass
class Fitted:
    """A data set's analysis with the model that similar cases use, and where that model came from."""

    analysis: CaseAnalysis
    bundle: BundleInfo | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        if self.bundle is not None:
            return f"model bundle {self.bundle.name} ({self.bundle.bundle_id})"
        if self.analysis.model is None:
            return "no model: the cases' feature profile (age, sex, conditions, medications, observations)"
        return f"a small model fitted in-process on these cases at first use ({self.seconds:.0f} s)"


@dataclass
class _Fit:
    revision: tuple[int, int]
    future: Future
    started: float


class CasesState:
    """Per-service state, kept in ``ctx.state["cases"]``: the case store (built on the service's
    database and cipher), case frames, fitted analyses and recent cohort results, each keyed by
    data set and store revision."""

    def __init__(self, *, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = CaseStore(db=ctx.db, cipher=ctx.cipher, hasher=IdentifierHasher.from_settings(ctx.settings))
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[tuple[int, int], pd.DataFrame]] = {}
        self._fits: dict[str, _Fit] = {}
        self._cohorts: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._words: dict[str, tuple[tuple[int, int], Any, dict[str, str]]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def revision(self, dataset: str) -> tuple[int, int]:
        return self.store.revision(dataset)

    def dataset(self, name: str | None) -> str:
        """A stored data set by name; with no name, the only one stored."""
        stored = sorted(self.store.datasets())
        if not stored:
            raise HTTPException(404, "The case store is empty; import cases first (medassist cases import whas500, or make demo).")
        if not name:
            if len(stored) == 1:
                return stored[0]
            raise DataError(f"Give a data set: one of {', '.join(stored)}.")
        if name not in stored:
            raise HTTPException(404, str(unknown_name_error(name, stored, kind="data set")))
        return name

    def frame(self, dataset: str) -> tuple[tuple[int, int], pd.DataFrame]:
        rev = self.revision(dataset)
        cached = self._frames.get(dataset)
        if cached is not None and cached[0] == rev:
            return cached
        frame = self.store.frame(dataset=dataset)
        with self._lock:
            self._frames[dataset] = (rev, frame)
        return rev, frame

    def fitted(self, dataset: str, *, wait: float | None) -> Fitted | None:
        """The data set's analysis; fitting starts at first use. ``wait=0`` returns None while it
        runs; else waits up to ``wait`` seconds, then 503."""
        rev, frame = self.frame(dataset)
        with self._lock:
            fit = self._fits.get(dataset)
            if fit is None or fit.revision != rev:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medassist-cases-fit")
                fit = self._fits[dataset] = _Fit(rev, self._pool.submit(self._build, dataset, frame), time.monotonic())
        if wait == 0 and not fit.future.done():
            return None
        try:
            return fit.future.result(timeout=wait)
        except FutureTimeout:
            raise HTTPException(503, f"The similar-case model for data set '{dataset}' is still being fitted "
                                     f"(started {time.monotonic() - fit.started:.0f} s ago); try again shortly.",
                                headers={"Retry-After": "10"}) from None

    def fitting_since(self, dataset: str) -> float:
        fit = self._fits.get(dataset)
        return 0.0 if fit is None else time.monotonic() - fit.started

    def _bundles(self, dataset: str) -> list[BundleInfo]:
        infos = [i for i in self.ctx.catalog.list(tasks=TASKS) if i.data_source == f"case store ({dataset})"]
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def _build(self, dataset: str, frame: pd.DataFrame) -> Fitted:
        t0 = time.monotonic()
        notes: list[str] = []
        for info in self._bundles(dataset):
            try:
                analysis = CaseAnalysis.load(frame, info.path)
                _warm(analysis)
                return Fitted(analysis=analysis, bundle=info, seconds=time.monotonic() - t0, notes=notes)
            except MedassistError as e:
                log.warning("cases: model bundle %s does not fit data set %s (%s); fitting one", info.bundle_id, dataset, type(e).__name__)
                notes.append(f"Model bundle {info.bundle_id} could not be used for these cases: {e}")
        if not CaseAnalysis.can_fit(frame):  # no outcomes to learn from: similar cases by feature profile
            analysis = CaseAnalysis(frame=frame, notes=["No survival model: these cases have too few outcomes to learn "
                                                        "from; similar cases by their feature profile."])
            _warm(analysis)
            return Fitted(analysis=analysis, bundle=None, seconds=time.monotonic() - t0, notes=notes + analysis.notes)
        analysis = CaseAnalysis.fit(frame, seed=0)
        _warm(analysis)
        return Fitted(analysis=analysis, bundle=None, seconds=time.monotonic() - t0, notes=notes + analysis.notes)

    def words(self, dataset: str) -> tuple[Any, dict[str, str]]:
        """The data set's dictionary (keyed by its frame's columns) and its endpoint in words."""
        rev, frame = self.frame(dataset)
        cached = self._words.get(dataset)
        if cached is None or cached[0] != rev:
            dictionary = case_dictionary(self.ctx.db, dataset, [str(c) for c in frame.columns])
            cached = self._words[dataset] = (rev, dictionary, endpoint_of(self.ctx.db, dataset, dictionary))
        return cached[1], cached[2]

    def cohort(self, dataset: str, where: str, by: str) -> dict[str, Any]:
        """Kaplan-Meier summary and plots (PNG bytes), the last few kept (the plot route reuses them)."""
        rev, frame = self.frame(dataset)
        key = (dataset, rev, where, by)
        with self._lock:
            if key in self._cohorts:
                self._cohorts.move_to_end(key)
                return self._cohorts[key]
        with scratch_dir(self.ctx, "cohort-") as tmp:
            dictionary, endpoint = self.words(dataset)
            res = CaseAnalysis(frame=frame).cohort(where or None, by or None, out_dir=tmp, dictionary=dictionary, endpoint=endpoint)
            pngs = {name: FsPath(path).read_bytes() for name, path in res["plots"].items()}
        out = {**res, "dataset": dataset, "plots": pngs}
        with self._lock:
            self._cohorts[key] = out
            while len(self._cohorts) > MAX_COHORTS:
                self._cohorts.popitem(last=False)
        return out


def _warm(analysis: CaseAnalysis) -> None:
    # both embeddings and the reason tables are computed here, once, before any request reads them
    analysis.embeddings(outcome_aware=False)
    if analysis.model is not None:
        analysis.embeddings(outcome_aware=True)


_STATE_LOCK = threading.Lock()


def cases_state(ctx: ServiceContext) -> CasesState:
    state = ctx.state.get(NAME)
    if state is None:
        with _STATE_LOCK:
            state = ctx.state.get(NAME)
            if state is None:
                state = ctx.state[NAME] = CasesState(ctx=ctx)
    return state


# --------------------------------------------------------------------------------------------
# The assistant's answers (shared by the API and the pages)


def _audit(ctx: ServiceContext, principal: Principal, action: str, *, query: Any = None, bundle_id: str | None = None,
           **detail: Any) -> int:
    """One audit entry: who, what, which case ids or data set, a hash of the query (never the query)."""
    return ctx.audit(principal, action=action, bundle_id=bundle_id, input_sha256=None if query is None else sha256_json(query),
                     detail={**detail, "via": principal.via.value})


def resolve_case(state: CasesState, principal: Principal, ref: str) -> str:
    """Our case id for ``ref``. With ``cases.identified`` any identifier the store accepts; else a case id only."""
    if principal.can(Permission.CASES_IDENTIFIED):
        try:
            return state.store.resolve(ref)
        except DataError as e:
            raise HTTPException(404 if "No stored case" in str(e) else 409, str(e)) from None
    if CASE_ID.match(ref) and state.store.has_case(ref):
        return ref
    raise HTTPException(404, f"No case with the case id '{ref}'. The de-identified view looks cases up by case id "
                             "(c followed by 16 hex digits); MRNs and source ids need the 'cases.identified' permission.")


def _dataset_of(state: CasesState, case_id: str) -> str:
    """The data set of a case id that ``resolve_case`` returned."""
    dataset = state.store.dataset_of(case_id)
    if dataset is None:  # removed since it was resolved
        raise HTTPException(404, f"No case with the case id '{case_id}'.")
    return dataset


def _summaries(state: CasesState, case_ids: list[str]) -> list[dict[str, Any]]:
    """De-identified summaries (the shape of ``CaseStore.list_cases``) of the given cases, in that order."""
    return state.store.summaries(case_ids)


def search(ctx: ServiceContext, principal: Principal, query: SearchQuery) -> dict[str, Any]:
    state = cases_state(ctx)
    datasets = state.store.datasets()
    if query.dataset and query.dataset not in datasets:
        raise HTTPException(404, str(unknown_name_error(query.dataset, sorted(datasets), kind="data set")))
    q, matched, notes = query.q, "all", []
    if not q:
        rows = state.store.list_cases(dataset=query.dataset, limit=query.limit, offset=query.offset, deidentified=True)
        total = state.store.count(dataset=query.dataset)
    else:
        hit = None
        if principal.can(Permission.CASES_IDENTIFIED) or CASE_ID.match(q):
            try:
                hit = resolve_case(state, principal, q)
            except HTTPException as e:
                if e.status_code == 409:
                    notes.append(str(e.detail))
        if hit is not None:
            rows = _summaries(state, [hit])
            rows = [r for r in rows if not query.dataset or r["dataset"] == query.dataset]
            total, matched = len(rows), "identifier"
        else:
            total, ids = state.store.search_conditions(q, dataset=query.dataset, limit=query.limit, offset=query.offset)
            rows, matched = _summaries(state, ids), "condition"
    audit_id = _audit(ctx, principal, "cases.search", query=q or None, dataset=query.dataset, matched=matched, n_results=len(rows))
    return {"disclaimer": DISCLAIMER, "dataset": query.dataset, "q": q, "matched": matched, "total": total,
            "limit": query.limit, "offset": query.offset, "cases": rows, "notes": notes, "audit_id": audit_id}


def case_view(ctx: ServiceContext, principal: Principal, ref: str, *, identified: bool) -> dict[str, Any]:
    if identified and not principal.can(Permission.CASES_IDENTIFIED):
        message = f"Your role ({principal.role.value}) may not see identified cases (needs 'cases.identified'); the de-identified view is open to you."
        if principal.via is Surface.PAGE:
            raise PageDenied(message)
        raise HTTPException(403, message)
    state = cases_state(ctx)
    case_id = resolve_case(state, principal, ref)
    case = state.store.get_case(case_id, deidentified=not identified)
    audit_id = _audit(ctx, principal, "cases.view-identified" if identified else "cases.view", case_id=case_id, dataset=case["dataset"])
    return {"disclaimer": DISCLAIMER, "identified": identified, "case": case, "audit_id": audit_id}


def similar_cases(ctx: ServiceContext, principal: Principal, ref: str, query: SimilarQuery, *,
                  wait: float | None = FIT_WAIT_S) -> dict[str, Any]:
    """The k most similar cases in the query case's data set; ``{"pending": True, ...}`` while its
    model is being fitted and ``wait=0``."""
    state = cases_state(ctx)
    case_id = resolve_case(state, principal, ref)
    dataset = _dataset_of(state, case_id)
    fitted = state.fitted(dataset, wait=wait)
    if fitted is None:
        return {"pending": True, "dataset": dataset, "seconds": state.fitting_since(dataset)}
    res = fitted.analysis.similar(case_id, k=query.k, outcome_aware=query.outcome_aware)
    bundle_id = fitted.bundle.bundle_id if fitted.bundle else None
    audit_id = _audit(ctx, principal, "cases.similar", bundle_id=bundle_id, case_id=case_id, dataset=dataset, k=query.k,
                      outcome_aware=query.outcome_aware, n_results=len(res["neighbours"]))
    return {"disclaimer": DISCLAIMER, "dataset": dataset, **res, "model": fitted.source,
            "bundle": None if fitted.bundle is None else {"id": fitted.bundle.bundle_id, "name": fitted.bundle.name},
            "notes": fitted.notes, "audit_id": audit_id}


def risk_curve(ctx: ServiceContext, principal: Principal, ref: str, *, wait: float | None = FIT_WAIT_S,
               plot: bool = False) -> dict[str, Any]:
    """One patient's predicted survival curve (against the cohort's Kaplan-Meier), restricted mean
    survival and the factors that move it; ``{"pending": True, ...}`` while the model is fitted."""
    state = cases_state(ctx)
    case_id = resolve_case(state, principal, ref)
    dataset = _dataset_of(state, case_id)
    fitted = state.fitted(dataset, wait=wait)
    if fitted is None:
        return {"pending": True, "dataset": dataset, "seconds": state.fitting_since(dataset)}
    with scratch_dir(ctx, "risk-") as tmp:
        res = fitted.analysis.patient_risk(case_id, out_dir=tmp if plot else None, endpoint=state.words(dataset)[1])
        png = FsPath(res["plots"]["risk"]).read_bytes() if plot else None
    res.pop("plots", None)
    bundle_id = fitted.bundle.bundle_id if fitted.bundle else None
    audit_id = _audit(ctx, principal, "cases.risk", bundle_id=bundle_id, case_id=case_id, dataset=dataset)
    out = {"disclaimer": DISCLAIMER, "dataset": dataset, **res, "model": fitted.source,
           "bundle": None if fitted.bundle is None else {"id": fitted.bundle.bundle_id, "name": fitted.bundle.name},
           "notes": fitted.notes, "audit_id": audit_id}
    if png is not None:
        out["plot"] = data_uri(png, "image/png")
    return out


def cohort(ctx: ServiceContext, principal: Principal, query: CohortQuery, *, action: str = "cases.cohort") -> dict[str, Any]:
    state = cases_state(ctx)
    dataset = state.dataset(query.dataset)
    res = state.cohort(dataset, query.where, query.by)
    audit_id = _audit(ctx, principal, action, query={"where": query.where, "by": query.by}, dataset=dataset, n=res["n"])
    return {**res, "audit_id": audit_id}


def cohort_json(res: dict[str, Any], query: CohortQuery) -> dict[str, Any]:
    from urllib.parse import urlencode

    params = urlencode({k: v for k, v in (("dataset", res["dataset"]), ("where", query.where), ("by", query.by)) if v})
    out = {k: v for k, v in res.items() if k != "plots"}
    return {"disclaimer": DISCLAIMER, **out, "plot_url": f"/api/v1/{NAME}/cohort/km.png?{params}",
            "time_unit": "days"}


def code_note(ctx: ServiceContext, principal: Principal, body: CodeBody) -> dict[str, Any]:
    clean = deidentify_note(body.text)
    suggestions = [s.to_dict() for s in suggest_codes(clean.text, top=body.top, deidentify_first=False)]
    audit_id = _audit(ctx, principal, "cases.code", query=body.text, n_suggestions=len(suggestions), redacted=clean.counts)
    return {"disclaimer": DISCLAIMER, "deidentified_text": clean.text, "redacted": clean.counts, "suggestions": suggestions,
            "stored": False, "audit_id": audit_id,
            "note": "Suggestions for a human coder: 'excluded' codes are negated in the note, 'flagged' ones uncertain or historical."}


# --------------------------------------------------------------------------------------------
# REST API (plain ``def`` routes: FastAPI runs them in its thread pool, off the event loop)


@api.get("", summary="Data sets in the case store and how many cases each holds")
def api_datasets(request: Request, principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    store = cases_state(get_ctx(request)).store
    sets = store.datasets()
    return {"disclaimer": DISCLAIMER, "datasets": [{"name": k, "n_cases": v} for k, v in sets.items()], "total": sum(sets.values())}


@api.get("/search", summary="Find cases by case id (clinicians: any identifier) or condition code/text (audited)",
         responses=error_responses(404))
def api_search(request: Request, query: Annotated[SearchQuery, Query()], principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    return search(get_ctx(request), principal, query)


@api.get("/conditions", summary="Condition codes stored for a data set (all data sets when none is given), with case counts",
         responses=error_responses(404))
def api_conditions(request: Request, dataset: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50, principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    if dataset:
        cases_state(ctx).dataset(dataset)  # 404 naming the stored data sets
    return {"dataset": dataset, "conditions": condition_counts(ctx.db, dataset, limit=limit)}


@api.get("/cohort", summary="Kaplan-Meier per group, median survival [95% CI], log-rank test, Cox hazard ratios (audited)",
         responses=error_responses(404))
def api_cohort(request: Request, query: Annotated[CohortQuery, Query()], principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    return cohort_json(cohort(get_ctx(request), principal, query), query)


@api.get("/cohort/km.png", summary="The cohort's Kaplan-Meier plot with 95% bands and numbers at risk (PNG; audited)",
         response_class=Response, responses={200: {"content": {"image/png": {}}}, **error_responses(404)})
def api_cohort_plot(request: Request, query: Annotated[CohortQuery, Query()], principal: Principal = Depends(READ_API)) -> Response:
    res = cohort(get_ctx(request), principal, query, action="cases.cohort-plot")
    return Response(res["plots"]["km"], media_type="image/png")


@api.post("/code", summary="A note → de-identified text and ICD-10-CM suggestions (negation-aware; nothing stored)")
def api_code(request: Request, body: CodeBody, principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    return code_note(get_ctx(request), principal, body)


@api.get("/{case_ref}", summary="One case: demographics, conditions, labs, medications, outcome (audited)",
         responses=error_responses(409))
def api_case(request: Request, query: Annotated[CaseQuery, Query()], case_ref: str = CASE_REF,
             principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    return case_view(get_ctx(request), principal, case_ref, identified=query.identified)


@api.get("/{case_ref}/similar", summary="The k most similar cases with their outcomes and the reasons (audited)",
         responses=error_responses(409, 503))
def api_similar(request: Request, query: Annotated[SimilarQuery, Query()], case_ref: str = CASE_REF,
                principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    return similar_cases(get_ctx(request), principal, case_ref, query)


@api.get("/{case_ref}/risk", summary="This patient's predicted survival curve against the cohort, and its top factors (audited)",
         responses=error_responses(409, 503))
def api_risk(request: Request, case_ref: str = CASE_REF, principal: Principal = Depends(READ_API)) -> dict[str, Any]:
    result = risk_curve(get_ctx(request), principal, case_ref)
    if result.get("pending"):
        raise HTTPException(503, f"The survival model for data set {result['dataset']!r} is still being fitted; try again shortly.",
                            headers={"Retry-After": "10"})
    return result


# --------------------------------------------------------------------------------------------
# Pages


def _lab_rows(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest value of each observation code (labs, vitals, covariates), with how many there are."""
    latest: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for ob in case.get("observations", []):
        code = ob["code"]
        counts[code] = counts.get(code, 0) + 1
        prev = latest.get(code)
        day, prev_day = ob.get("day"), (prev or {}).get("day")
        if prev is None or (day is not None and (prev_day is None or day >= prev_day)):
            latest[code] = ob
    return [{**ob, "n": counts[c]} for c, ob in sorted(latest.items())]


@pages.get("")
def page_index(request: Request, query: Annotated[SearchQuery, Query()], principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    datasets = cases_state(ctx).store.datasets()
    result = search(ctx, principal, query) if datasets else None
    template = "cases/results.html" if is_htmx(request) else "cases/index.html"
    conditions = condition_counts(ctx.db, query.dataset if query.dataset in datasets else None) if datasets else []
    return render(request, template, datasets=datasets, query=query, result=result, conditions=conditions,
                  can_identify=principal.can(Permission.CASES_IDENTIFIED))


@pages.get("/conditions")
def page_conditions(request: Request, query: Annotated[SearchQuery, Query()], principal: Principal = Depends(READ_PAGE)) -> Response:
    """The condition codes of the chosen data set (a partial: the search form reloads it when the data set changes)."""
    ctx = get_ctx(request)
    datasets = cases_state(ctx).store.datasets()
    if query.dataset and query.dataset not in datasets:
        raise HTTPException(404, str(unknown_name_error(query.dataset, sorted(datasets), kind="data set")))
    return render(request, "cases/conditions.html", query=query, conditions=condition_counts(ctx.db, query.dataset),
                  can_identify=principal.can(Permission.CASES_IDENTIFIED))


def _cohort_fields(state: CasesState, dataset: str) -> dict[str, Any]:
    """What the cohort form offers for ``dataset``: its columns in words, filter examples, condition codes."""
    frame = state.frame(dataset)[1]
    dictionary, endpoint = state.words(dataset)
    columns = [str(c) for c in frame.columns if c not in ("time", "event")]
    conditions = condition_counts(state.ctx.db, dataset, limit=8, icd10_only=True)
    return {"columns": columns, "options": column_options(columns, dictionary), "endpoint": endpoint,
            "examples": filter_examples(frame, dictionary, conditions), "conditions": conditions}


@pages.get("/cohort")
def page_cohort(request: Request, query: Annotated[CohortQuery, Query()], principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    state = cases_state(ctx)
    datasets = state.store.datasets()
    result: dict[str, Any] | None = None
    fields: dict[str, Any] = {"columns": [], "options": [], "examples": [], "conditions": [], "endpoint": None}
    error = ""
    if datasets:
        dataset = query.dataset or sorted(datasets)[0]
        if dataset not in datasets:
            raise HTTPException(404, str(unknown_name_error(dataset, sorted(datasets), kind="data set")))
        fields = _cohort_fields(state, dataset)
        if {"where", "by"} & set(request.query_params):  # the form was sent (a data set link only shows it)
            try:
                result = cohort(ctx, principal, query.model_copy(update={"dataset": dataset}))
            except MedassistError as e:  # a bad filter or column: shown next to the form
                error = str(e)
        query = query.model_copy(update={"dataset": dataset})
    images = {k: data_uri(v, "image/png") for k, v in result["plots"].items()} if result else {}
    if is_htmx(request):
        if error:
            return render(request, "partials/error.html", status_code=422, status=422, message=error)
        return render(request, "cases/cohort_result.html", result=result, images=images)
    return render(request, "cases/cohort.html", status_code=422 if error else 200, datasets=datasets, query=query,
                  result=result, images=images, error=error, **fields)


@pages.get("/cohort/fields")
def page_cohort_fields(request: Request, query: Annotated[CohortQuery, Query()], principal: Principal = Depends(READ_PAGE)) -> Response:
    """The cohort form's data-set-dependent part (a partial: the data set picker swaps it in, so the
    columns offered are always the chosen data set's)."""
    state = cases_state(get_ctx(request))
    dataset = state.dataset(query.dataset)
    return render(request, "cases/cohort_fields.html", query=query.model_copy(update={"dataset": dataset, "by": "", "where": ""}),
                  oob=True, **_cohort_fields(state, dataset))


@pages.get("/code")
def page_code(request: Request, principal: Principal = Depends(READ_PAGE)) -> Response:
    return render(request, "cases/code.html", text="", result=None, max_note=MAX_NOTE)


@pages.post("/code")
async def page_code_post(request: Request, principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    text = form.get("text")
    text = text if isinstance(text, str) else ""
    if not text.strip() or len(text) > MAX_NOTE:
        message = "Paste a note to code." if not text.strip() else f"The note is {len(text):,} characters long; at most {MAX_NOTE:,} are accepted."
        if is_htmx(request):
            return render(request, "partials/error.html", status_code=422, status=422, message=message)
        return render(request, "cases/code.html", status_code=422, text=text[:MAX_NOTE], result=None, error=message, max_note=MAX_NOTE)
    result = await run_in_threadpool(code_note, ctx, principal, CodeBody(text=text))
    if is_htmx(request):
        return render(request, "cases/code_result.html", result=result)
    return render(request, "cases/code.html", text=text, result=result, max_note=MAX_NOTE)


@pages.get("/{case_ref}")
def page_case(request: Request, query: Annotated[CaseQuery, Query()], case_ref: str = CASE_REF,
              principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = ctx.catalog.get(case_ref) if re.fullmatch(r"[0-9a-f]{16}", case_ref) else None
    if info is not None and info.task in TASKS:  # "use in Cases" from the model list: that data set's cases
        dataset = info.data_source.removeprefix("case store (").removesuffix(")")
        return RedirectResponse(f"/{NAME}?dataset={dataset}" if re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", dataset) else f"/{NAME}",
                                status_code=303)
    view = case_view(ctx, principal, case_ref, identified=query.identified)
    return render(request, "cases/case.html", view=view, case=view["case"], labs=_lab_rows(view["case"]),
                  can_identify=principal.can(Permission.CASES_IDENTIFIED))


@pages.get("/{case_ref}/similar")
def page_similar(request: Request, query: Annotated[SimilarQuery, Query()], case_ref: str = CASE_REF,
                 principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    result = similar_cases(ctx, principal, case_ref, query, wait=0 if is_htmx(request) else FIT_WAIT_S)
    if result.get("pending"):  # the data set's model is being fitted: htmx asks again shortly
        return render(request, "cases/similar_pending.html", case_ref=case_ref, query=query, result=result)
    template = "cases/similar.html" if is_htmx(request) else "cases/similar_page.html"
    return render(request, template, result=result, query=query, case_ref=case_ref)


@pages.get("/{case_ref}/risk")
def page_risk(request: Request, case_ref: str = CASE_REF, principal: Principal = Depends(READ_PAGE)) -> Response:
    ctx = get_ctx(request)
    result = risk_curve(ctx, principal, case_ref, wait=0 if is_htmx(request) else FIT_WAIT_S, plot=True)
    if result.get("pending"):
        return render(request, "cases/risk_pending.html", case_ref=case_ref, result=result)
    template = "cases/risk.html" if is_htmx(request) else "cases/risk_page.html"
    return render(request, template, result=result, case_ref=case_ref)


PLUGIN = AssistantPlugin(
    name=NAME, title="Cases", summary="Earlier cases like this one, what happened to them (Kaplan-Meier, hazard ratios), and ICD-10 coding of notes.",
    tasks=TASKS, permission=Permission.CASES_DEIDENTIFIED, api_router=api, page_router=pages, templates_dir=TEMPLATES / NAME,
)
