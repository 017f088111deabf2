"""The diagnosis assistant (tabular) as a service plugin.

API (``/api/v1/diagnosis``, bearer token, role with ``assistants.use``):
    GET  /                        diagnosis bundles on offer
    GET  /{bundle_id}/schema      the input columns (kind, training median or categories)
    POST /{bundle_id}/predict     JSON ``{"row": {...}}`` or ``{"rows": [...]}`` → calibrated
                                  probabilities, top factors, flags, the bundle that answered
    POST /{bundle_id}/predict-file  a CSV upload → the same, one result per row
Pages (``/diagnosis``): a bundle list, a form for one patient row, a CSV upload; results are
swapped in by htmx (or rendered as a whole page without JavaScript).
"""

from __future__ import annotations

import gc
import logging
import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastapi import Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from medassist.assistants.diagnosis import DiagnosisAssistant
from medassist.evaluation.calibration import TemperatureScaler
from medassist.exceptions import DataError
from medassist.explain.attributions import group_attributions, integrated_gradients, top_attributions
from medassist.featurizers.tabular import parse_numeric
from medassist.models import Ensemble
from medassist.models.onnx_runtime import compile_forward
from medassist.service.auth import Principal
from medassist.service.batching import Batcher
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import clinical_fields, clinical_title, dictionary_of, factor_rows, json_value, missing_words
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.downloads import prediction_csv_response
from medassist.service.plugin_common import BundlePlugin, bundle_ref, example_values, input_fields, parse_form_row
from medassist.service.predictions import Recorded, ToRecord, record_prediction, record_predictions
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
from medassist.service.uploads import CheckedUpload
from medassist.store.audit import sha256_json
from medassist.types import SCORE_DECIMALS

log = logging.getLogger(__name__)

NAME = "diagnosis"
TASKS = ("diagnosis-tabular",)
# The noun stays "diagnosis": the 404 reads "No diagnosis model bundle with id ..." as it always has.
KIT = BundlePlugin(name=NAME, tasks=TASKS, noun="diagnosis")
USE_API, USE_PAGE, BUNDLE_ID = KIT.use_api, KIT.use_page, KIT.bundle_id
#: A numeric value this many training standard deviations from the training mean is flagged.
OUT_OF_RANGE_SD = 6.0

api, pages = KIT.api, KIT.pages


class PredictBody(RowsBody):
    """One row (``row``) or several (``rows``): column name → value; ``null`` = unknown (imputed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"row": {"age": 61, "sex": "F"}, "top_k": 3}]})


class Factor(BaseModel):
    column: str
    weight: float = Field(description="Integrated-gradients attribution to the predicted class (logit units)")
    value: float | str | None = Field(None, description="The patient's value of this input (null: missing, imputed)")


class RowResult(BaseModel):
    row: int
    prediction: str
    probabilities: dict[str, float] = Field(description="Calibrated (temperature-scaled) class probabilities")
    confidence: float = Field(description="Calibrated probability of the predicted class")
    member_sd: float | None = Field(None, description="Ensemble disagreement (SD of members' probability for the prediction)")
    n_imputed: int
    missing: list[str] = Field(default_factory=list, description="Input columns that were missing (imputed)")
    n_unknown_categories: int
    unknown_categories: list[str] = Field(default_factory=list, description="column=value of each category never seen in training")
    n_out_of_range: int = 0
    out_of_range: list[str] = Field(description="Input columns whose value lies outside the range seen in training")
    factors: list[Factor]
    patient_ref: str | None = None


class PredictResponse(BaseModel):
    disclaimer: str
    bundle: BundleRef
    calibration: dict[str, Any]
    warnings: list[str] = Field(default_factory=list, description="Warnings every answer of this model carries (e.g. poor calibration)")
    predictions: list[RowResult]
    audit_id: int
    prediction_id: int


# --------------------------------------------------------------------------------------------
# Core: validate → predict → record


_info = KIT.info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> DiagnosisAssistant:
    return DiagnosisAssistant(bundle=ctx.catalog.load(info))


@dataclass(frozen=True)
class RowBatch:
    """Validated JSON rows as columns, no table: each input column an (N,) array (numeric: float64
    with NaN for null; categorical: the raw values, ``None`` for null) and the patient references."""

    columns: dict[str, np.ndarray]
    refs: list[Any]

    def __len__(self) -> int:
        return len(self.refs)

    @classmethod
    def concat(cls, parts: list[RowBatch]) -> RowBatch:
        return cls({c: np.concatenate([p.columns[c] for p in parts]) for c in parts[0].columns}, [r for p in parts for r in p.refs])

    def to_frame(self, id_column: str | None) -> pd.DataFrame:
        """The table the pandas path (``predict_frame``) reads: the same columns, same arrays."""
        data = dict(self.columns)
        if id_column:
            data[id_column] = np.asarray(self.refs, dtype=object)
        return pd.DataFrame(data, copy=False)


def rows_to_batch(rows: list[dict[str, Any]], assistant: DiagnosisAssistant, *, max_rows: int, source: str) -> RowBatch:
    """Check JSON rows against the model's inputs and gather them into columns (nothing is guessed)."""
    fz, schema = assistant.bundle.featurizer, assistant.bundle.schema
    columns_data, ids = gather_rows(rows, fz=fz, columns=list(fz.columns_), id_column=schema.id_column, max_rows=max_rows,
                                    source=source)
    fz.check_plausible_columns(columns_data, source=source)  # 1e308 is finite JSON but overflows the model: refused, naming the column
    return RowBatch(columns_data, ids)


def rows_to_frame(rows: list[dict[str, Any]], assistant: DiagnosisAssistant, *, max_rows: int, source: str) -> pd.DataFrame:
    """The checked rows as a table (the pandas path; the service's JSON routes use :func:`rows_to_batch`)."""
    batch = rows_to_batch(rows, assistant, max_rows=max_rows, source=source)
    return batch.to_frame(assistant.bundle.schema.id_column)


def csv_to_frame(data: bytes, *, filename: str, assistant: DiagnosisAssistant, max_rows: int) -> pd.DataFrame:
    """Parse an uploaded CSV with the reader ``medassist predict`` uses, with messages naming it."""
    fz = assistant.bundle.featurizer
    frame = read_csv_rows(data, filename=filename, needed=list(fz.columns_), max_rows=max_rows)
    for c in fz.categorical_:
        check_categories(fz, c, frame[c].tolist(), source=filename)
    for c in fz.numeric_:
        fz.check_plausible(c, parse_numeric(frame[c], column=c, source=filename).to_numpy(), source=filename)
    return frame


def predict_frame(assistant: DiagnosisAssistant, frame: pd.DataFrame, *, explain: bool, top_k: int, source: str) -> list[dict[str, Any]]:
    """One result per row: calibrated probabilities, the prediction, flags and top factors."""
    bundle = assistant.bundle
    fz, schema = bundle.featurizer, bundle.schema
    out = assistant.predict(frame, source=source, explain=explain, top_k=top_k)
    probs = out[[f"prob_{c}" for c in schema.classes]].to_numpy(dtype=float)
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise DataError(f"{source}: row {int(bad.argmax()) + 1} gives no finite probability; check its values are in a plausible range.")
    # Values outside the training range: the featurizer's flags; bundles from before it stored
    # training ranges fall back to "far from the training mean" (vectorised: runs every batch).
    numeric = list(fz.numeric_)
    flags_matrix = np.zeros((len(frame), 0), dtype=bool)
    if numeric and not getattr(fz, "range_", None):
        values = frame[numeric].to_numpy(dtype=float)
        mean = np.array([fz.mean_[c] for c in numeric])
        scale = np.array([fz.scale_[c] for c in numeric])
        with np.errstate(invalid="ignore"):
            flags_matrix = np.abs(values - mean) > OUT_OF_RANGE_SD * scale  # NaN compares False
    refs = frame_refs(frame, schema.id_column)
    inputs = frame[list(fz.columns_)]
    absent = inputs.isna().to_numpy()
    records = out.to_dict("records")
    results: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        row_probs = {c: float(probs[i, j]) for j, c in enumerate(schema.classes)}
        factors = []
        if explain:
            for k in range(1, top_k + 1):
                name, weight = r.get(f"factor_{k}", ""), r.get(f"factor_{k}_weight", np.nan)
                if name and not pd.isna(weight):
                    value = inputs.iat[i, inputs.columns.get_loc(str(name))] if str(name) in inputs.columns else None
                    factors.append({"column": str(name), "weight": float(weight), "value": json_value(value)})
        results.append({
            "row": i + 1, "prediction": str(r["prediction"]), "probabilities": row_probs, "confidence": row_probs[str(r["prediction"])],
            "member_sd": float(r["member_sd"]) if "member_sd" in r else None,
            "n_imputed": int(r["n_imputed"]), "missing": [c for c, a in zip(inputs.columns, absent[i]) if a],
            "n_unknown_categories": int(r["n_unknown_categories"]),
            "unknown_categories": _split_flags(r.get("unknown_categories")),
            "out_of_range": (_split_flags(r.get("out_of_range")) if getattr(fz, "range_", None)
                             else [c for c, f in zip(numeric, flags_matrix[i]) if f] if numeric else []),
            "factors": factors, "patient_ref": patient_ref(refs[i]),
        })
    for r in results:
        r["n_out_of_range"] = len(r["out_of_range"])
    return results


def _split_flags(cell: Any) -> list[str]:
    return [] if cell is None or (isinstance(cell, float) and np.isnan(cell)) or cell == "" else str(cell).split("; ")


class _Lean:
    """What the lean path keeps per loaded bundle: the temperature scaler, built once, and the
    forward pass on ONNX Runtime where it gives PyTorch's probabilities (else PyTorch)."""

    def __init__(self, assistant: DiagnosisAssistant) -> None:
        bundle = assistant.bundle
        self.scaler = TemperatureScaler.from_dict(bundle.calibration["scaler"])
        self.forward = compile_forward(bundle.model, n_features=len(bundle.featurizer.feature_names_))
        log.info("diagnosis bundle %s: forward pass on %s (%s)", bundle.path.name if bundle.path else "?",
                 self.forward.runtime, self.forward.reason)


def predict_batch(assistant: DiagnosisAssistant, batch: RowBatch, *, explain: bool, top_k: int, source: str,
                  lean: _Lean | None = None) -> list[dict[str, Any]]:
    """The results :func:`predict_frame` gives for the same rows, without a table: the featurizer's
    array straight from the checked columns, one forward pass, the same rounding and flags."""
    bundle = assistant.bundle
    fz, schema, model = bundle.featurizer, bundle.schema, bundle.model
    n = len(batch)
    if n == 0:
        raise DataError(f"{source}: no rows to predict.")
    fm = fz.transform_arrays(batch.columns, source=source)
    members = None
    if lean is not None:  # member log-probabilities (K, N, C), ONNX Runtime or PyTorch
        logp = lean.forward(fm.values).astype(np.float64)
        if isinstance(model, Ensemble):
            members = np.exp(logp)
            logits = np.logaddexp.reduce(logp, axis=0) - math.log(len(logp))  # what Ensemble.forward returns
        else:
            logits = logp[0]
    else:
        x = torch.from_numpy(fm.values)
        with torch.no_grad():
            if isinstance(model, Ensemble):
                member_probs = model.member_probabilities(x)
                logits = torch.log(member_probs.mean(dim=0)).numpy()
                members = member_probs.numpy()
            else:
                logits = model(x).numpy()
    scaler = lean.scaler if lean is not None else TemperatureScaler.from_dict(bundle.calibration["scaler"])
    raw = scaler.transform(logits)
    if len(schema.classes) == 2:
        pred_idx = np.where(raw[:, schema.positive_index] >= 0.5, schema.positive_index, 1 - schema.positive_index)
    else:
        pred_idx = raw.argmax(axis=1)
    probs = np.round(raw, SCORE_DECIMALS).astype(float)
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise DataError(f"{source}: row {int(bad.argmax()) + 1} gives no finite probability; check its values are in a plausible range.")
    member_sd = None if members is None else np.round(members[:, np.arange(n), pred_idx].std(axis=0), SCORE_DECIMALS)
    numeric = list(fz.numeric_)
    has_ranges = bool(getattr(fz, "range_", None))
    flags_matrix = None
    if numeric and not has_ranges:  # bundles from before training ranges were stored
        values = np.column_stack([batch.columns[c] for c in numeric])
        mean = np.array([fz.mean_[c] for c in numeric])
        scale = np.array([fz.scale_[c] for c in numeric])
        with np.errstate(invalid="ignore"):
            flags_matrix = np.abs(values - mean) > OUT_OF_RANGE_SD * scale
    tops = None
    if explain:
        attr = integrated_gradients(model, fm.values, pred_idx)
        grouped, names = group_attributions(attr, fz.feature_groups_)
        tops = top_attributions(grouped, names, k=top_k)
    columns = list(fz.columns_)
    absent = np.column_stack([pd.isna(batch.columns[c]) for c in columns]) if columns else np.zeros((n, 0), dtype=bool)
    classes = [str(c) for c in schema.classes]
    results: list[dict[str, Any]] = []
    for i in range(n):
        row_probs = {c: float(probs[i, j]) for j, c in enumerate(classes)}
        prediction = classes[pred_idx[i]]
        factors = []
        if tops is not None:
            for name, weight in tops[i][:top_k]:
                weight = round(weight, 4)
                if name and not math.isnan(weight):
                    value = batch.columns[name][i] if name in batch.columns else None
                    factors.append({"column": str(name), "weight": float(weight), "value": json_value(value)})
        ref = batch.refs[i]
        out_of_range = (list(fm.out_of_range[i]) if has_ranges
                        else [c for c, f in zip(numeric, flags_matrix[i]) if f] if flags_matrix is not None else [])
        results.append({
            "row": i + 1, "prediction": prediction, "probabilities": row_probs, "confidence": row_probs[prediction],
            "member_sd": None if member_sd is None else float(member_sd[i]),
            "n_imputed": int(fm.n_imputed[i]), "missing": [c for c, a in zip(columns, absent[i]) if a],
            "n_unknown_categories": int(fm.n_unknown[i]), "unknown_categories": list(fm.unknown_categories[i]),
            "out_of_range": out_of_range, "factors": factors,
            "patient_ref": None if ref is None or (isinstance(ref, float) and math.isnan(ref)) else str(ref),
            "n_out_of_range": len(out_of_range),
        })
    return results


def _calibration(assistant: DiagnosisAssistant) -> dict[str, Any]:
    cal = assistant.bundle.calibration
    return {"method": "temperature scaling", "temperature": cal.get("temperature"), "fitted_on": cal.get("fitted_on"),
            "test_ece_calibrated": cal.get("test_ece_calibrated")}


def _batcher(ctx: ServiceContext, info: BundleInfo, assistant: DiagnosisAssistant) -> Batcher:
    """One batcher per loaded bundle: concurrent JSON/form requests share forward passes, and
    the requests of one batch are recorded in one audit transaction (group commit)."""
    batchers = ctx.state.setdefault(NAME, {})
    key = (info.bundle_id, info.mtime_ns)
    if key in batchers:
        return batchers[key]
    with _BATCHERS_LOCK:  # the first requests to a bundle arrive together: one of them builds its batcher
        if key in batchers:
            return batchers[key]
        lean = _Lean(assistant)

        def run(options, batch: RowBatch) -> list[dict[str, Any]]:
            explain, top_k = options
            return predict_batch(assistant, batch, explain=explain, top_k=top_k, source="request", lean=lean)

        def finish(options, done: list[tuple[ToRecord, list[dict[str, Any]]]]) -> list[tuple[list[dict[str, Any]], Recorded]]:
            items = []
            for pending, results in done:
                for i, r in enumerate(results, start=1):
                    r["row"] = i
                items.append(ToRecord(principal=pending.principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task,
                                      input_value=pending.input_value, input_sha256=pending.input_sha256, output=results,
                                      n_rows=len(results), via=pending.via))
            return list(zip((results for _, results in done), record_predictions(ctx, items), strict=True))

        # A loaded bundle brings torch, pandas and SQLAlchemy object graphs that live as long as the
        # process; without this, each full (generation 2) collection walks them all again and every
        # request in flight waits (~250 ms on 2 busy cores: the p99 at 32 clients). Frozen objects
        # are never scanned; the ones made later still are.
        gc.freeze()
        batchers[key] = Batcher(run=run, max_rows=256, max_rows_by_key=_batch_rows,
                                concat=RowBatch.concat, finish=finish, one_thread=True)
        return batchers[key]


_BATCHERS_LOCK = threading.Lock()


#: Integrated gradients keep n_steps activations per row: explained batches stay small (memory).
EXPLAIN_BATCH_ROWS = 32


def _batch_rows(options: Hashable) -> int:
    """Rows per batch for a batcher key ``(explain, top_k)``."""
    explain = isinstance(options, tuple) and bool(options[0])
    return EXPLAIN_BATCH_ROWS if explain else 256


def run_and_record(
    ctx: ServiceContext, principal: Principal, info: BundleInfo, assistant: DiagnosisAssistant, rows: RowBatch | pd.DataFrame, *,
    explain: bool, top_k: int, input_value: Any, input_sha256: str, via: str, source: str, batch: bool = True,
) -> dict[str, Any]:
    """Predict and record: JSON rows (a :class:`RowBatch`) through the batcher and its group commit;
    a table (a CSV upload) on its own, recorded in its own transaction."""
    if batch and isinstance(rows, RowBatch):
        pending = ToRecord(principal=principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=input_value,
                           input_sha256=input_sha256, output=None, n_rows=len(rows), via=via)
        results, rec = _batcher(ctx, info, assistant).submit((explain, top_k), rows, pending)
    else:
        frame = rows.to_frame(assistant.bundle.schema.id_column) if isinstance(rows, RowBatch) else rows
        results = predict_frame(assistant, frame, explain=explain, top_k=top_k, source=source)
        rec = record_prediction(ctx, principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=input_value,
                                input_sha256=input_sha256, output=results, n_rows=len(results), via=via)
    return _answer(info, assistant, results, rec)


def _answer(info: BundleInfo, assistant: DiagnosisAssistant, results: list[dict[str, Any]], rec: Recorded) -> dict[str, Any]:
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(info), "calibration": _calibration(assistant),
            "warnings": assistant.warnings, "predictions": results, "audit_id": rec.audit_id, "prediction_id": rec.prediction_id}


#: JSON requests with at most this many rows are checked and answered on the event loop (their
#: batch runs on the model's thread); larger ones, and the first request to a bundle (which loads
#: it and compiles its forward pass), go to a worker thread so the loop never stalls on them.
INLINE_ROWS = 16


def _warm(ctx: ServiceContext, info: BundleInfo) -> bool:
    """Whether ``info``'s bundle is loaded and its batcher built (nothing slow left to do)."""
    return ctx.catalog.is_loaded(info) and (info.bundle_id, info.mtime_ns) in ctx.state.get(NAME, {})


# --------------------------------------------------------------------------------------------
# REST API


KIT.add_index_routes(summary="Diagnosis model bundles on offer", template="diagnosis/index.html")


def _input_fields(assistant: DiagnosisAssistant) -> list[dict[str, Any]]:
    fz = assistant.bundle.featurizer
    return [{**f, "missing_rate": fz.missing_rate_.get(f["column"])} for f in input_fields(fz, list(fz.columns_))]


@api.get("/{bundle_id}/schema", summary="Input columns of a diagnosis bundle")
def api_schema(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    schema = assistant.bundle.schema
    return {"bundle": bundle_ref(info), "target": schema.target, "classes": schema.classes, "positive_class": schema.positive_class,
            "id_column": schema.id_column, "inputs": _input_fields(assistant)}


@api.post("/{bundle_id}/predict", response_model=PredictResponse, summary="Predict from JSON rows (audited)")
async def api_predict(request: Request, body: PredictBody, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    rows = body.all_rows()
    if len(rows) > INLINE_ROWS or not _warm(ctx, info):
        return await run_in_threadpool(_predict_json, ctx, principal, info, rows, body.explain, body.top_k)
    assistant = _assistant(ctx, info)
    batch = rows_to_batch(rows, assistant, max_rows=ctx.settings.max_rows_per_request, source="request")
    pending = ToRecord(principal=principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=rows,
                       input_sha256=sha256_json(rows), output=None, n_rows=len(batch), via="api")
    results, rec = await _batcher(ctx, info, assistant).submit_async((body.explain, body.top_k), batch, pending)
    return _json(_answer(info, assistant, results, rec))


def _predict_json(ctx: ServiceContext, principal: Principal, info: BundleInfo, rows: list[dict[str, Any]], explain: bool,
                  top_k: int) -> Response:
    """``api_predict`` on a worker thread (large requests, or a bundle's first)."""
    assistant = _assistant(ctx, info)
    batch = rows_to_batch(rows, assistant, max_rows=ctx.settings.max_rows_per_request, source="request")
    result = run_and_record(ctx, principal, info, assistant, batch, explain=explain, top_k=top_k, input_value=rows,
                            input_sha256=sha256_json(rows), via="api", source="request")
    return _json(result)


def _json(result: dict[str, Any]) -> Response:
    """The response as FastAPI would send it through ``PredictResponse`` (validated, same keys),
    encoded by pydantic-core in one call instead of FastAPI's field-by-field encoder."""
    return Response(PredictResponse.model_validate(result).model_dump_json(), media_type="application/json")


@api.post("/{bundle_id}/predict-file", response_model=PredictResponse, summary="Predict every row of a CSV upload (audited)")
async def api_predict_file(
    request: Request, file: UploadFile = File(...), bundle_id: str = BUNDLE_ID, explain: bool = Query(True),
    top_k: int = Query(3, ge=1, le=20), principal: Principal = Depends(USE_API),
) -> dict[str, Any]:
    ctx = get_ctx(request)
    upload = await read_csv_upload(ctx, file)
    return await run_in_threadpool(_predict_upload, ctx, principal, bundle_id, upload, explain, top_k, "api-file")


def _predict_upload(ctx: ServiceContext, principal: Principal, bundle_id: str, upload: CheckedUpload, explain: bool, top_k: int, via: str) -> dict[str, Any]:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    frame = csv_to_frame(upload.data, filename=upload.filename, assistant=assistant, max_rows=ctx.settings.max_rows_per_request)
    return run_and_record(ctx, principal, info, assistant, frame, explain=explain, top_k=top_k,
                          input_value=upload.data.decode("utf-8-sig", "replace"), input_sha256=upload.sha256, via=via,
                          source=upload.filename, batch=False)


# --------------------------------------------------------------------------------------------
# Pages


def _words(ctx: ServiceContext, info: BundleInfo, assistant: DiagnosisAssistant, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the templates need to speak in clinical words: the dictionary, the title, and each
    answer's factors and missing values in words."""
    dd = dictionary_of(ctx, info)
    schema = assistant.bundle.schema
    target = dd.get(schema.target)
    class_words = {c: (target.meaning(c) if target else None) or c for c in schema.classes}
    if result is not None:
        for p in result["predictions"]:
            p["factor_rows"] = factor_rows(p.get("factors", []), dd, prediction=p["prediction"], classes=list(schema.classes),
                                           positive_class=schema.positive_class, class_words=class_words)
            p["missing_text"] = missing_words(p.get("missing", []), dd)
            p["out_of_range_labels"] = [dd.label_with_unit(c) for c in p.get("out_of_range", [])]
    return {"dd": dd, "title": clinical_title(info, dd), "class_words": class_words,
            "target_label": dd.label(schema.target) if target else schema.target}


def _form_page(request: Request, info: BundleInfo, assistant: DiagnosisAssistant, *, values: dict[int, str] | None = None,
               errors: dict[int, str] | None = None, result: dict[str, Any] | None = None, error: str = "",
               status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    words = _words(ctx, info, assistant, result)
    return render(request, "diagnosis/form.html", status_code=status_code, info=info,
                  fields=clinical_fields(_input_fields(assistant), words["dd"]), schema=assistant.bundle.schema,
                  values=values or {}, errors=errors or {}, result=result, error=error, card=info.model_card, **words)


@pages.get("/{bundle_id}")
def page_form(request: Request, bundle_id: str = BUNDLE_ID, example: bool = Query(False), principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    return _form_page(request, info, assistant, values=example_values(_input_fields(assistant)) if example else {})


@pages.post("/{bundle_id}/predict")
async def page_predict(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    explain = form.get("explain") == "on"
    return await run_in_threadpool(_page_predict, request, ctx, principal, bundle_id, form, explain)


def _page_predict(request: Request, ctx: ServiceContext, principal: Principal, bundle_id: str, form: FormData, explain: bool) -> Response:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    fields = _input_fields(assistant)
    row, values, errors = parse_form_row(form, fields)
    if errors:
        return refuse_form(request, ctx, info, fields, errors, lambda message: _form_page(
            request, info, assistant, values=values, errors=errors, error=message, status_code=422))
    batch = rows_to_batch([row], assistant, max_rows=1, source="form")
    result = run_and_record(ctx, principal, info, assistant, batch, explain=explain, top_k=5, input_value=[row],
                            input_sha256=sha256_json([row]), via="web", source="form")
    if is_htmx(request):
        return render(request, "diagnosis/result.html", result=result, info=info, card=info.model_card,
                      **_words(ctx, info, assistant, result))
    return _form_page(request, info, assistant, values=values, result=result)


@pages.post("/{bundle_id}/predict-file")
async def page_predict_file(request: Request, bundle_id: str = BUNDLE_ID, file: UploadFile = File(...),
                            principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    upload = await read_csv_upload(ctx, file)
    result = await run_in_threadpool(_predict_upload, ctx, principal, bundle_id, upload, True, 3, "web-file")
    info = _info(ctx, bundle_id)
    words = _words(ctx, info, _assistant(ctx, info), result)
    if is_htmx(request):
        return render(request, "diagnosis/table.html", result=result, info=info, card=info.model_card, **words)
    return render(request, "diagnosis/table_page.html", result=result, info=info, card=info.model_card, **words)


@pages.get("/predictions/{prediction_id}.csv")
def page_download(request: Request, prediction_id: int = Path(ge=1, le=2**62), principal: Principal = Depends(USE_PAGE)) -> Response:
    """The results of one of your diagnosis predictions as CSV (formula cells neutralised; audited)."""
    ctx = get_ctx(request)
    return prediction_csv_response(ctx, principal, prediction_id, assistant=NAME, rows=_download_rows)


def _download_rows(ctx: ServiceContext, bundle_id: str, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    dd = download_dictionary(ctx, bundle_id)
    rows = []
    for p in output:
        row: dict[str, Any] = {"row": p.get("row"), "patient": p.get("patient_ref") or "", "prediction": p.get("prediction")}
        for c, prob in (p.get("probabilities") or {}).items():
            row[f"probability {c}"] = round(float(prob), 4)
        row["ensemble disagreement (SD)"] = "" if p.get("member_sd") is None else round(float(p["member_sd"]), 4)
        missing = p.get("missing") or []
        row["missing (imputed)"] = labels(dd, missing) if missing else (f"{p.get('n_imputed')} value(s)" if p.get("n_imputed") else "")
        row["outside the training data"] = labels(dd, p.get("out_of_range") or [])
        factor_columns(row, p.get("factors") or [], dd, weight="weight", digits=4)
        rows.append(row)
    return rows


PLUGIN = KIT.plugin(
    title="Diagnosis", summary="A patient's table row → calibrated probabilities, the factors behind them, the model card.",
)
