"""The prognosis assistant (``train --task survival`` bundles) as a service plugin.

API (``/api/v1/prognosis``, bearer token, role with ``assistants.use``):
    GET  /                        survival bundles on offer
    GET  /{bundle_id}/schema      the input columns, horizons, time unit and the cohort's summary
    POST /{bundle_id}/predict     JSON ``{"row": {...}}`` or ``{"rows": [...]}`` → per row the risk,
                                  survival at each horizon with the ensemble's interval, median
                                  survival, flags and top factors (``curve: true``: the whole curve)
    POST /{bundle_id}/predict-file  a CSV upload → the same, one result per row
Pages (``/prognosis``): a bundle list; a form for one patient whose answer draws the patient's
survival curve with its band against the cohort's Kaplan-Meier curve (inline SVG); a CSV upload
whose table can be downloaded. Every answer is audited (who, when, bundle, SHA-256 of the input).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from medassist.assistants.prognosis import TASK, PrognosisAssistant, horizon_label
from medassist.assistants.prognosis_curves import cohort_of, patient_curves, row_flags, top_factors
from medassist.exceptions import DataError
from medassist.featurizers.tabular import parse_numeric
from medassist.service.auth import Principal
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import clinical_fields, clinical_title, dictionary_of, horizon_words, missing_words, sig, with_unit
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.downloads import prediction_csv_response
from medassist.service.plugin_common import BundlePlugin, bundle_ref, example_values, input_fields, parse_form_row
from medassist.service.predictions import record_prediction
from medassist.service.rendering import is_htmx, render
from medassist.service.table_rows import (
    BundleRef,
    RowsBody,
    check_categories,
    download_dictionary,
    factor_columns,
    frame_refs,
    gather_rows,
    labels,
    patient_ref,
    read_csv_rows,
    read_csv_upload,
    refuse_form,
)
from medassist.store.audit import sha256_json

NAME = "prognosis"
TASKS = (TASK,)
KIT = BundlePlugin(name=NAME, tasks=TASKS, noun="prognosis")
USE_API, USE_PAGE, BUNDLE_ID = KIT.use_api, KIT.use_page, KIT.bundle_id
#: Integrated gradients run n_steps passes per row: explained requests stay this small.
MAX_EXPLAINED_ROWS = 1000

api, pages = KIT.api, KIT.pages


class SurvivalPredictBody(RowsBody):
    """One row (``row``) or several (``rows``): column name → value; ``null`` = unknown (imputed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"row": {"age": 61, "tgrade": "II"}, "top_k": 3}]})

    curve: bool = Field(False, description="Also return each row's whole survival curve with its band (at the model's time grid)")


class HorizonSurvival(BaseModel):
    time: float = Field(description="The horizon, in the bundle's time unit")
    label: str = Field(description="As in the column names: surv_<label>")
    survival: float = Field(description="Ensemble mean of P(event-free at this time)")
    low: float = Field(description="Lowest ensemble member")
    high: float = Field(description="Highest ensemble member")
    cohort: float | None = Field(None, description="The training cohort's Kaplan-Meier survival at this time (null: not stored)")


class SurvivalFactor(BaseModel):
    column: str
    weight: float = Field(description="Integrated-gradients share of the restricted mean survival time vs an average patient "
                                      "(time units; > 0: longer expected survival)")
    value: float | int | str | None = Field(None, description="The patient's value of this input (null: missing, imputed)")


class SurvivalCurve(BaseModel):
    times: list[float]
    survival: list[float]
    low: list[float]
    high: list[float]


class SurvivalRowResult(BaseModel):
    row: int
    patient_ref: str | None = None
    risk: float = Field(description="Probability of the event by the last horizon (higher = worse)")
    surv: dict[str, float] = Field(description="surv_<t>, surv_<t>_low, surv_<t>_high: the columns `medassist predict` writes")
    survival: list[HorizonSurvival]
    median_survival: float | None = Field(None, description="Time at which survival reaches 50% (null: not reached within follow-up)")
    n_imputed: int
    missing: list[str] = Field(default_factory=list, description="Input columns that were missing (imputed)")
    n_unknown_categories: int = 0
    unknown_categories: list[str] = Field(default_factory=list)
    n_out_of_range: int = 0
    out_of_range: list[str] = Field(default_factory=list, description="Inputs outside the range seen in training")
    factors: list[SurvivalFactor] = Field(default_factory=list)
    curve: SurvivalCurve | None = None


class SurvivalCohortSummary(BaseModel):
    n: int
    events: int
    median: float | None = None
    what: str


class SurvivalPredictResponse(BaseModel):
    disclaimer: str
    bundle: BundleRef
    time_unit: str
    horizons: list[float]
    risk_definition: str
    interval: str
    cohort: SurvivalCohortSummary | None = None
    predictions: list[SurvivalRowResult]
    audit_id: int
    prediction_id: int


# --------------------------------------------------------------------------------------------
# Core: validate → predict → record


_info = KIT.info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> PrognosisAssistant:
    """One assistant per loaded bundle (it rebuilds the survival model once)."""
    return KIT.cached(ctx, info, lambda bundle: PrognosisAssistant(bundle=bundle))


def _fields(assistant: PrognosisAssistant) -> list[dict[str, Any]]:
    """Form fields of the covariates; a long-tailed lab enters the model as log1p, so its training
    median is shown back on the patient's scale."""
    fz = assistant.model.encoder.featurizer
    logs = set(assistant.model.encoder.log_columns)
    fields = input_fields(fz, assistant.covariates)
    for f in fields:
        if f["column"] in logs and f.get("median") is not None:
            f["median"] = float(f"{np.expm1(f['median']):.10g}")
        f["missing_rate"] = fz.missing_rate_.get(f["column"])
    return fields


def rows_to_frame(rows: list[dict[str, Any]], assistant: PrognosisAssistant, *, max_rows: int, source: str) -> pd.DataFrame:
    """Check JSON rows against the model's inputs and build the table (nothing is guessed)."""
    codes = sorted(assistant.model.encoder.vocab)  # ';'-joined code lists (case-store layouts), optional
    data, ids = gather_rows(rows, fz=assistant.model.encoder.featurizer, columns=assistant.covariates, id_column=assistant.id_column,
                            max_rows=max_rows, source=source, codes=codes)
    frame = pd.DataFrame(data)
    if assistant.id_column:
        frame[assistant.id_column] = np.asarray(ids, dtype=object)
    return frame


def csv_to_frame(data: bytes, *, filename: str, assistant: PrognosisAssistant, max_rows: int) -> pd.DataFrame:
    """Parse an uploaded CSV with the reader ``medassist predict`` uses, with messages naming it."""
    fz = assistant.model.encoder.featurizer
    frame = read_csv_rows(data, filename=filename, needed=assistant.covariates, max_rows=max_rows)
    for c in assistant.covariates:
        if c in fz.numeric_:
            frame[c] = parse_numeric(frame[c], column=c, source=filename)
        else:
            check_categories(fz, c, frame[c].tolist(), source=filename)
    if assistant.id_column and assistant.id_column in frame.columns:
        long = frame[assistant.id_column].astype(str).str.len() > 64
        if long.any():
            raise DataError(f"{filename}: row {int(long.to_numpy().argmax()) + 1}, column '{assistant.id_column}': longer than 64 characters.")
    return frame


def _num(v: Any) -> float | None:
    return None if v is None or pd.isna(v) or not math.isfinite(float(v)) else float(v)


def _cohort_at(cohort: dict[str, Any] | None, t: float) -> float | None:
    if cohort is None:
        return None
    k = int(np.searchsorted(np.asarray(cohort["times"]), t, side="right")) - 1
    return float(cohort["survival"][max(k, 0)]) if t <= cohort["times"][-1] else None


def predict_frame(assistant: PrognosisAssistant, frame: pd.DataFrame, *, explain: bool, top_k: int, curve: bool,
                  source: str) -> list[dict[str, Any]]:
    """One result per row, in order: the assistant's own numbers, flags, factors and (``curve``) the curve."""
    frame = frame.reset_index(drop=True)
    out = assistant.predict(frame, source=source)
    x = assistant.model.features(frame, source=source)
    if not np.isfinite(out["risk"].to_numpy(dtype=float)).all():
        bad = int((~np.isfinite(out["risk"].to_numpy(dtype=float))).argmax())
        raise DataError(f"{source}: row {bad + 1} gives no finite survival; check its values are in a plausible range.")
    flags = row_flags(assistant, frame, source=source)
    factors = top_factors(assistant, frame, x, top_k=top_k) if explain else [[] for _ in range(len(frame))]
    curves = patient_curves(assistant, x) if curve else None
    cohort = cohort_of(assistant)
    refs = frame_refs(frame, assistant.id_column)
    results = []
    for i, r in enumerate(out.to_dict("records")):
        horizons, surv = [], {}
        for h in assistant.horizons:
            lab = horizon_label(h)
            s, lo, hi = (float(r[f"surv_{lab}{k}"]) for k in ("", "_low", "_high"))
            surv.update({f"surv_{lab}": s, f"surv_{lab}_low": lo, f"surv_{lab}_high": hi})
            horizons.append({"time": float(h), "label": lab, "survival": s, "low": lo, "high": hi, "cohort": _cohort_at(cohort, h)})
        res: dict[str, Any] = {
            "row": i + 1, "patient_ref": patient_ref(refs[i]), "risk": float(r["risk"]), "surv": surv,
            "survival": horizons, "median_survival": _num(r["median_survival"]), "n_imputed": int(r["n_imputed"]),
            "missing": flags["missing"][i], "n_unknown_categories": len(flags["unknown_categories"][i]),
            "unknown_categories": flags["unknown_categories"][i], "n_out_of_range": len(flags["out_of_range"][i]),
            "out_of_range": flags["out_of_range"][i], "factors": factors[i], "curve": None,
        }
        if curves is not None:
            res["curve"] = {k: [round(float(v), 5) for v in (curves[k] if k == "times" else curves[k][i])]
                            for k in ("times", "survival", "low", "high")}
        results.append(res)
    return results


def _answer_context(assistant: PrognosisAssistant) -> dict[str, Any]:
    cohort = cohort_of(assistant)
    k = int(assistant.model.info.get("n_members") or len(assistant.model.nets.members))
    return {
        "time_unit": assistant.time_unit, "horizons": [float(h) for h in assistant.horizons],
        "risk_definition": f"probability of the event by {horizon_label(assistant.horizons[-1])} {assistant.time_unit}",
        "interval": f"lowest and highest of the ensemble's {k} members",
        "cohort": None if cohort is None else {k_: cohort.get(k_) for k_ in ("n", "events", "median", "what")},
    }


def run_and_record(ctx: ServiceContext, principal: Principal, info: BundleInfo, assistant: PrognosisAssistant, frame: pd.DataFrame, *,
                   explain: bool, top_k: int, curve: bool, input_value: Any, input_sha256: str, via: str, source: str) -> dict[str, Any]:
    if explain and len(frame) > MAX_EXPLAINED_ROWS:
        raise DataError(f"{source}: {len(frame)} rows to explain; at most {MAX_EXPLAINED_ROWS} (send explain=false for more).")
    results = predict_frame(assistant, frame, explain=explain, top_k=top_k, curve=curve, source=source)
    rec = record_prediction(ctx, principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=input_value,
                            input_sha256=input_sha256, output=results, n_rows=len(results), via=via)
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(info), **_answer_context(assistant), "predictions": results,
            "audit_id": rec.audit_id, "prediction_id": rec.prediction_id}


# --------------------------------------------------------------------------------------------
# REST API


KIT.add_index_routes(summary="Prognosis (survival) model bundles on offer", template="prognosis/index.html")


@api.get("/{bundle_id}/schema", summary="Input columns, horizons and cohort of a prognosis bundle")
def api_schema(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    a = _assistant(ctx, info)
    return {"bundle": bundle_ref(info), "time": a.time, "event": a.event, "id_column": a.id_column, **_answer_context(a),
            "inputs": _fields(a)}


@api.post("/{bundle_id}/predict", response_model=SurvivalPredictResponse, summary="Survival at the horizons from JSON rows (audited)")
def api_predict(request: Request, body: SurvivalPredictBody, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    # A plain ``def``: FastAPI runs it in its thread pool, off the event loop.
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    rows = body.all_rows()
    frame = rows_to_frame(rows, assistant, max_rows=ctx.settings.max_rows_per_request, source="request")
    return run_and_record(ctx, principal, info, assistant, frame, explain=body.explain, top_k=body.top_k, curve=body.curve,
                          input_value=rows, input_sha256=sha256_json(rows), via="api", source="request")


@api.post("/{bundle_id}/predict-file", response_model=SurvivalPredictResponse, summary="Survival for every row of a CSV upload (audited)")
async def api_predict_file(
    request: Request, file: UploadFile = File(...), bundle_id: str = BUNDLE_ID, explain: bool = Query(True),
    top_k: int = Query(3, ge=1, le=20), principal: Principal = Depends(USE_API),
) -> dict[str, Any]:
    ctx = get_ctx(request)
    upload = await read_csv_upload(ctx, file)
    return await run_in_threadpool(_predict_upload, ctx, principal, bundle_id, upload, explain, top_k, "api-file")


def _predict_upload(ctx: ServiceContext, principal: Principal, bundle_id: str, upload, explain: bool, top_k: int, via: str) -> dict[str, Any]:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    frame = csv_to_frame(upload.data, filename=upload.filename, assistant=assistant, max_rows=ctx.settings.max_rows_per_request)
    return run_and_record(ctx, principal, info, assistant, frame, explain=explain, top_k=top_k, curve=False,
                          input_value=upload.data.decode("utf-8-sig", "replace"), input_sha256=upload.sha256, via=via,
                          source=upload.filename)


# --------------------------------------------------------------------------------------------
# The chart: the patient's curve (ensemble mean) inside its band (lowest to highest member),
# the cohort's Kaplan-Meier curve with its 95% band, and the horizons; plain SVG geometry with
# presentation attributes (the CSP forbids inline styles), labels escaped by the template.

CHART_W, CHART_H, LEFT, RIGHT, TOP, BOTTOM = 640, 300, 52, 20, 14, 40


def _ticks(hi: float, n: int = 6) -> list[float]:
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [round(k * step, 10) for k in range(int(hi / step) + 1)]


def chart(result_row: dict[str, Any], cohort: dict[str, Any] | None, *, horizons: list[dict[str, Any]]) -> dict[str, Any]:
    curve = result_row["curve"]
    t_max = max(curve["times"][-1], cohort["times"][-1] if cohort else 0.0) or 1.0
    pw, ph = CHART_W - LEFT - RIGHT, CHART_H - TOP - BOTTOM

    def x(t: float) -> float:
        return round(LEFT + pw * min(max(t, 0.0), t_max) / t_max, 1)

    def y(s: float) -> float:
        return round(TOP + ph * (1.0 - min(max(s, 0.0), 1.0)), 1)

    def line(ts: list[float], ss: list[float]) -> str:
        return " ".join(f"{x(t)},{y(s)}" for t, s in zip(ts, ss))

    def steps(ts: list[float], ss: list[float]) -> str:
        d = f"M{x(ts[0])},{y(ss[0])}"
        for t, s in zip(ts[1:], ss[1:]):
            d += f" H{x(t)} V{y(s)}"
        return d

    t = curve["times"]
    band = line(t, curve["high"]) + " " + line(t[::-1], curve["low"][::-1])
    out: dict[str, Any] = {
        "width": CHART_W, "height": CHART_H, "left": LEFT, "right": CHART_W - RIGHT, "top": TOP, "bottom": CHART_H - BOTTOM,
        "patient_line": line(t, curve["survival"]), "patient_band": band,
        "x_ticks": [{"x": x(v), "label": sig(v, 4)} for v in _ticks(t_max)],
        "y_ticks": [{"y": y(v), "label": f"{round(100 * v)}%"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "median_y": y(0.5), "cohort_line": None, "cohort_band": None,
        "marks": [{"x": x(h["time"]), "y": y(h["survival"]), "y_lo": y(h["low"]), "y_hi": y(h["high"]), "time": h["time"],
                   "label": h.get("words") or sig(h["time"], 4), "survival": h["survival"]} for h in horizons],
    }
    if cohort:
        ct = cohort["times"]
        out["cohort_line"] = steps(ct, cohort["survival"])
        out["cohort_band"] = line(ct, cohort["upper"]) + " " + line(ct[::-1], cohort["lower"][::-1])
    return out


# --------------------------------------------------------------------------------------------
# Pages


def _words(ctx: ServiceContext, info: BundleInfo, assistant: PrognosisAssistant, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clinical words: the dictionary, the title, the time unit and horizons in words, and (with
    a result) each answer's factors, missing values and flags in words."""
    dd = dictionary_of(ctx, info)
    unit = assistant.time_unit
    hw = {horizon_label(h): horizon_words(h, unit) for h in assistant.horizons}
    words = {"dd": dd, "title": clinical_title(info, dd), "unit": unit, "horizon_words": hw,
             "event_label": dd.label(assistant.event), "risk_words": f"risk of the event by {hw[horizon_label(assistant.horizons[-1])]}"}
    if result is not None:
        for p in result["predictions"]:
            for h in p["survival"]:
                h["words"] = hw.get(h["label"], h["label"])
            p["median_text"] = with_unit(p["median_survival"], unit) if p["median_survival"] is not None else "not reached"
            p["missing_text"] = missing_words(p.get("missing", []), dd)
            p["out_of_range_labels"] = [dd.label_with_unit(c) for c in p.get("out_of_range", [])]
            p["factor_rows"] = [{"column": f["column"], "label": dd.label_with_unit(f["column"]), "value": dd.describe(f["column"], f["value"]),
                                 "weight": f["weight"], "effect": with_unit(abs(f["weight"]), unit),
                                 "direction": "longer expected survival" if f["weight"] > 0 else "shorter expected survival",
                                 "note": dd.role_note(f["column"])} for f in p.get("factors", [])]
    return words


def _form_page(request: Request, info: BundleInfo, assistant: PrognosisAssistant, *, values: dict[int, str] | None = None,
               errors: dict[int, str] | None = None, result: dict[str, Any] | None = None, error: str = "",
               status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    words = _words(ctx, info, assistant, result)
    return render(request, "prognosis/form.html", status_code=status_code, info=info, card=info.model_card,
                  fields=clinical_fields(_fields(assistant), words["dd"]), values=values or {}, errors=errors or {},
                  result=result, chart=_chart_of(assistant, result), cohort=cohort_of(assistant), error=error, **words)


def _chart_of(assistant: PrognosisAssistant, result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result or not result["predictions"] or result["predictions"][0].get("curve") is None:
        return None
    p = result["predictions"][0]
    return chart(p, cohort_of(assistant), horizons=p["survival"])


@pages.get("/{bundle_id}")
def page_form(request: Request, bundle_id: str = BUNDLE_ID, example: bool = Query(False), principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    return _form_page(request, info, assistant, values=example_values(_fields(assistant)) if example else {})


@pages.post("/{bundle_id}/predict")
async def page_predict(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    return await run_in_threadpool(_page_predict, request, ctx, principal, bundle_id, form, form.get("explain") == "on")


def _page_predict(request: Request, ctx: ServiceContext, principal: Principal, bundle_id: str, form, explain: bool) -> Response:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    fields = _fields(assistant)
    row, values, errors = parse_form_row(form, fields)
    if errors:
        return refuse_form(request, ctx, info, fields, errors, lambda message: _form_page(
            request, info, assistant, values=values, errors=errors, error=message, status_code=422))
    frame = rows_to_frame([row], assistant, max_rows=1, source="form")
    result = run_and_record(ctx, principal, info, assistant, frame, explain=explain, top_k=5, curve=True, input_value=[row],
                            input_sha256=sha256_json([row]), via="web", source="form")
    if is_htmx(request):
        words = _words(ctx, info, assistant, result)  # first: the chart labels the horizons in words
        return render(request, "prognosis/result.html", result=result, info=info, card=info.model_card,
                      chart=_chart_of(assistant, result), cohort=cohort_of(assistant), **words)
    return _form_page(request, info, assistant, values=values, result=result)


@pages.post("/{bundle_id}/predict-file")
async def page_predict_file(request: Request, bundle_id: str = BUNDLE_ID, file: UploadFile = File(...),
                            principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    upload = await read_csv_upload(ctx, file)
    result = await run_in_threadpool(_predict_upload, ctx, principal, bundle_id, upload, True, 3, "web-file")
    info = _info(ctx, bundle_id)
    words = _words(ctx, info, _assistant(ctx, info), result)
    template = "prognosis/table.html" if is_htmx(request) else "prognosis/table_page.html"
    return render(request, template, result=result, info=info, card=info.model_card, **words)


@pages.get("/predictions/{prediction_id}.csv")
def page_download(request: Request, prediction_id: int = Path(ge=1, le=2**62), principal: Principal = Depends(USE_PAGE)) -> Response:
    """The results of one of your prognosis predictions as CSV (formula cells neutralised; audited)."""
    ctx = get_ctx(request)
    return prediction_csv_response(ctx, principal, prediction_id, assistant=NAME, rows=_download_rows)


def _download_rows(ctx: ServiceContext, bundle_id: str, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns ``medassist predict`` writes (risk, surv_<t> with _low/_high, median_survival,
    n_imputed), then flags and factors in words."""
    dd = download_dictionary(ctx, bundle_id)
    rows = []
    for p in output:
        row: dict[str, Any] = {"row": p.get("row"), "patient": p.get("patient_ref") or "", "risk": round(float(p["risk"]), 5)}
        row.update({k: round(float(v), 5) for k, v in (p.get("surv") or {}).items()})
        row["median_survival"] = "" if p.get("median_survival") is None else round(float(p["median_survival"]), 2)
        row["n_imputed"] = p.get("n_imputed", 0)
        row["missing (imputed)"] = labels(dd, p.get("missing") or [])
        row["outside the training data"] = labels(dd, p.get("out_of_range") or [])
        factor_columns(row, p.get("factors") or [], dd, weight="effect", digits=3)
        rows.append(row)
    return rows


PLUGIN = KIT.plugin(
    title="Prognosis",
    summary="A patient's values → risk of the event over time: survival at the horizons with intervals, against the cohort.",
)
