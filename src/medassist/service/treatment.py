"""The treatment assistant as a service plugin.

API (``/api/v1/treatment``, bearer token, role with ``assistants.use``):
    GET  /                      treatment bundles on offer
    GET  /{bundle_id}/schema    arms, outcome scale and the covariate fields
    POST /{bundle_id}/advise    JSON ``{"patient": {...}}`` or ``{"patients": [...]}`` → per arm the
                                expected outcome with a 95% interval, the recommended arm, its
                                benefit over the reference, flags, effect modifiers and the evidence
Pages (``/treatment``): a bundle list and a patient form; the answer (with an inline SVG chart
of the per-arm outcomes and intervals) is swapped in by htmx or rendered as a whole page.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator
from starlette.concurrency import run_in_threadpool

from medassist.assistants.treatment import TreatmentAssistant
from medassist.service.auth import Principal
from medassist.service.bundles import BundleInfo
from medassist.service.clinical import clinical_fields, clinical_title, dictionary_of, horizon_words, missing_words, sig, with_unit
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.plugin_common import BundlePlugin, bundle_ref, check_rows, example_values, input_fields, parse_form_row
from medassist.service.predictions import record_prediction
from medassist.service.rendering import is_htmx, render
from medassist.service.table_rows import refuse_form
from medassist.store.audit import sha256_json

NAME = "treatment"
TASKS = ("treatment",)
KIT = BundlePlugin(name=NAME, tasks=TASKS, noun="treatment")
USE_API, USE_PAGE, BUNDLE_ID = KIT.use_api, KIT.use_page, KIT.bundle_id
#: Advice explains every patient with integrated gradients: requests stay small.
MAX_PATIENTS = 200

api, pages = KIT.api, KIT.pages

Value = StrictStr | StrictInt | StrictFloat | StrictBool | None


class AdviseBody(BaseModel):
    """One patient (``patient``) or several (``patients``): covariate → value; ``null`` = unknown (imputed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"patient": {"age": 61, "nodes": 3}, "top_k": 3}]})

    patient: dict[str, Value] | None = None
    patients: list[dict[str, Value]] | None = Field(None, min_length=1)
    explain: bool = True
    top_k: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_of(self) -> AdviseBody:
        if (self.patient is None) == (self.patients is None):
            raise ValueError("send exactly one of 'patient' (an object) or 'patients' (a list of objects)")
        return self

    def all_rows(self) -> list[dict[str, Any]]:
        return [self.patient] if self.patient is not None else list(self.patients or [])


_info = KIT.info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> TreatmentAssistant:
    """One assistant per loaded bundle (it builds the model wrapper once)."""
    return KIT.cached(ctx, info, lambda bundle: TreatmentAssistant(bundle=bundle))


def _covariates(assistant: TreatmentAssistant) -> list[str]:
    return [str(c) for c in assistant.info["covariates"]]


def _fields(assistant: TreatmentAssistant) -> list[dict[str, Any]]:
    return input_fields(assistant.model.featurizer, _covariates(assistant))


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) or pd.isna(v) else float(v)


def _evidence(assistant: TreatmentAssistant, info: BundleInfo) -> dict[str, Any]:
    card = assistant.model_card
    data = card.get("data") or {}
    metrics = (card.get("metrics") or {}).get("metrics") or {}
    effects = {k.removeprefix("DR effect "): v for k, v in metrics.items() if k.startswith("DR effect ")}
    return {"source": data.get("source", info.data_source), "assignment": assistant.info["assignment"],
            "n_train": data.get("n_train"), "n_test": data.get("n_test"), "test_effects_dr": effects,
            "overlap": (card.get("calibration") or {}).get("overlap"), "interval": assistant.info.get("interval")}


def advice_records(assistant: TreatmentAssistant, advice: pd.DataFrame, *, top_k: int) -> list[dict[str, Any]]:
    """The assistant's advice table as one record per patient (arms in the model's order)."""
    arms, ref = assistant.arms, assistant.arms[assistant.model.ref]
    kind = assistant.info["kind"]
    out = []
    for i, r in advice.iterrows():
        per_arm = []
        for a in arms:
            arm = {"arm": a, "expected": _num(r[f"pred_{a}"]), "lo": _num(r[f"lo_{a}"]), "hi": _num(r[f"hi_{a}"]),
                   "similar_patients": int(r[f"similar_{a}"]), "reference": a == ref, "recommended": a == r["recommended"],
                   "p_best": _num(r.get(f"p_best_{a}", np.nan))}
            if kind == "survival":
                arm["risk"], arm["risk_lo"], arm["risk_hi"] = (_num(r[f"{k}_{a}"]) for k in ("risk", "risk_lo", "risk_hi"))
            if a != ref:
                arm["vs_reference"], arm["vs_reference_lo"], arm["vs_reference_hi"] = (_num(r[f"{k}_{a}"]) for k in ("diff", "diff_lo", "diff_hi"))
            per_arm.append(arm)
        modifiers = []
        for k in range(1, top_k + 1):
            name, weight = r.get(f"modifier_{k}", ""), r.get(f"modifier_{k}_weight", np.nan)
            if name and not pd.isna(weight):
                modifiers.append({"covariate": str(name), "weight": float(weight)})
        out.append({
            "patient": int(i) + 1, "arms": per_arm, "recommended": str(r["recommended"]), "basis": str(r["recommendation_basis"]),
            "reference": str(r["reference"]), "benefit": _num(r["benefit"]), "benefit_lo": _num(r["benefit_lo"]),
            "benefit_hi": _num(r["benefit_hi"]), "outcome_scale": str(r["outcome_scale"]),
            "flags": [f for f in str(r["flags"]).split("; ") if f], "n_imputed": int(r["n_imputed"]),
            "effect_explained": str(r.get("effect_explained", "")) or None, "modifiers": modifiers,
            "confidence_flag": str(r.get("confidence_flag", "")) or None,
            "p_better_than_reference": _num(r.get("p_better_than_reference", np.nan)),
            "p_better_than_runner_up": _num(r.get("p_better_than_runner_up", np.nan)),
        })
    return out


def advise_rows(ctx: ServiceContext, principal: Principal, bundle_id: str, rows: list[dict[str, Any]], *, explain: bool,
                top_k: int, via: str, source: str) -> dict[str, Any]:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    fz = assistant.model.featurizer
    idc = assistant.info.get("id_column")
    clean = check_rows(rows, fz=fz, columns=_covariates(assistant), extra={idc} if idc else set(),
                       max_rows=min(MAX_PATIENTS, ctx.settings.max_rows_per_request), source=source)
    frame = pd.DataFrame({c: np.asarray([r.get(c) for r in clean], dtype=float if c in fz.numeric_ else object)
                          for c in _covariates(assistant)})
    advice = assistant.advise(frame, source=source, explain=explain, top_k=top_k)
    results = advice_records(assistant, advice, top_k=top_k)
    for res, row in zip(results, clean):
        res["missing"] = [c for c in _covariates(assistant) if row.get(c) is None]
    if idc:
        for res, row in zip(results, clean):
            res["patient_ref"] = None if row.get(idc) is None else str(row[idc])
    rec = record_prediction(ctx, principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task, input_value=clean,
                            input_sha256=sha256_json(clean), output=results, n_rows=len(results), via=via)
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(info), "arms": assistant.arms,
            "reference": assistant.arms[assistant.model.ref], "outcome_kind": assistant.info["kind"],
            "better": assistant.info["better"], "evidence": _evidence(assistant, info), "advice": results,
            "audit_id": rec.audit_id, "prediction_id": rec.prediction_id}


# --------------------------------------------------------------------------------------------
# The chart: per arm a dot (expected outcome) and a bar (95% interval), drawn as plain SVG
# geometry; the template escapes the labels, the stylesheet colours it (no inline styles: CSP).

CHART_W, LABEL_W, ROW_H, PAD = 640, 190, 34, 24


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) inside [lo, hi], never e-notation."""
    from matplotlib.ticker import MaxNLocator

    ticks = [float(v) for v in MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= v <= hi]
    return ticks or [lo, hi]


def chart(advice: dict[str, Any]) -> dict[str, Any]:
    arms = advice["arms"]
    values = [v for a in arms for v in (a["lo"], a["hi"], a["expected"]) if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    plot_w = CHART_W - LABEL_W - 2 * PAD  # room for the last tick label

    def x(v: float | None) -> float:
        return round(LABEL_W + (plot_w * ((v if v is not None else lo) - lo) / (hi - lo)), 1)

    rows = []
    for k, a in enumerate(arms):
        y = PAD + k * ROW_H + ROW_H / 2
        rows.append({"arm": a["arm"], "arm_words": a.get("arm_words", a["arm"]), "y": y, "x": x(a["expected"]), "x_lo": x(a["lo"]), "x_hi": x(a["hi"]),
                     "recommended": a["recommended"], "reference": a["reference"], "expected": a["expected"],
                     "lo": a["lo"], "hi": a["hi"]})
    ticks = [{"x": x(v), "label": sig(v, 4)} for v in nice_ticks(lo, hi)]
    ref = next((r for r in rows if r["reference"]), None)
    height = PAD * 2 + len(arms) * ROW_H
    return {"width": CHART_W, "height": height, "rows": rows, "ticks": ticks, "axis_y": height - PAD, "label_w": LABEL_W,
            "ref_x": ref["x"] if ref else None, "top": PAD / 2}


# --------------------------------------------------------------------------------------------
# REST API


KIT.add_index_routes(summary="Treatment model bundles on offer", template="treatment/index.html")


@api.get("/{bundle_id}/schema", summary="Arms, outcome and covariate fields of a treatment bundle")
def api_schema(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    a = _assistant(ctx, info)
    return {"bundle": bundle_ref(info), "treatment": a.info["treatment"], "arms": a.arms, "reference": a.arms[a.model.ref],
            "outcome_kind": a.info["kind"], "better": a.info["better"], "horizon": a.info.get("horizon"),
            "id_column": a.info.get("id_column"), "inputs": _fields(a)}


@api.post("/{bundle_id}/advise", summary="Per-arm expected outcomes, recommendation, flags and evidence (audited)")
def api_advise(request: Request, body: AdviseBody, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    # A plain ``def``: FastAPI runs it in its thread pool, off the event loop.
    return advise_rows(get_ctx(request), principal, bundle_id, body.all_rows(), explain=body.explain, top_k=body.top_k,
                       via="api", source="request")


# --------------------------------------------------------------------------------------------
# Pages


def _words(ctx: ServiceContext, info: BundleInfo, assistant: TreatmentAssistant, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clinical words for the treatment pages: arm names, the outcome and its unit, the horizon,
    and (with a result) each number with sensible significant figures and its unit."""
    dd = dictionary_of(ctx, info)
    a = assistant.info
    kind, target = a["kind"], assistant.bundle.schema.target
    arm_words = {str(arm): dd.meaning(a["treatment"], arm) or str(arm) for arm in assistant.arms}
    better = f"{a['better']} is better"
    if kind == "survival":
        unit = dd.time_unit or dd.unit(a.get("time") or target) or "time units"
        horizon = horizon_words(a.get("horizon"), unit)
        outcome = f"average {unit} alive and event-free over the first {horizon} (restricted mean)"
        risk_words = f"risk of the event by {horizon}"
    elif kind == "binary":
        unit, outcome, risk_words = "", f"probability of {dd.label(target).lower()}", ""
        horizon = ""
    else:
        unit, horizon, risk_words = dd.unit(target), "", ""
        outcome = dd.label(target) + (f" ({unit})" if unit else "")
    words = {"dd": dd, "title": clinical_title(info, dd), "arm_words": arm_words, "outcome_words": f"{outcome}; {better}",
             "outcome_unit": unit, "risk_words": risk_words, "treatment_label": dd.label(a["treatment"])}
    if result is not None:
        pct = kind == "binary"

        def num(v: Any) -> str:
            return (f"{100 * v:.1f} percentage points" if v is not None else "n/a") if pct else with_unit(v, unit)

        for adv in result["advice"]:
            adv["recommended_words"] = arm_words.get(adv["recommended"], adv["recommended"])
            adv["reference_words"] = arm_words.get(adv["reference"], adv["reference"])
            adv["benefit_text"] = (f"{num(adv['benefit'])} (95% interval {sig(adv['benefit_lo']) if not pct else num(adv['benefit_lo'])} "
                                   f"to {num(adv['benefit_hi'])})")
            adv["missing_text"] = missing_words(adv.get("missing", []), dd)
            adv["flags"] = [_plain_numbers(f, arm_words) for f in adv.get("flags", [])]
            for arm in adv["arms"]:
                arm["arm_words"] = arm_words.get(arm["arm"], arm["arm"])
                arm["expected_text"] = f"{num(arm['expected'])} [{sig(arm['lo'])} to {sig(arm['hi'])}]" if not pct else \
                    f"{_pct(arm['expected'])} [{_pct(arm['lo'])} to {_pct(arm['hi'])}]"
                if not arm["reference"]:
                    arm["vs_reference_text"] = f"{num(arm.get('vs_reference'))} [{sig(arm.get('vs_reference_lo'))} to {sig(arm.get('vs_reference_hi'))}]"
            for m in adv.get("modifiers", []):
                m["label"] = dd.label_with_unit(m["covariate"])
                m["note"] = dd.role_note(m["covariate"])
    return words


_E_NUMBER = re.compile(r"-?\d+(?:\.\d+)?e[+-]\d+")


def _plain_numbers(text: str, arm_words: dict[str, str]) -> str:
    """A flag's numbers without e-notation ("-1.27e+03" → "-1,270")."""
    return _E_NUMBER.sub(lambda m: sig(float(m.group(0))), text)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _form_page(request: Request, info: BundleInfo, assistant: TreatmentAssistant, *, values: dict[int, str] | None = None,
               errors: dict[int, str] | None = None, result: dict[str, Any] | None = None, error: str = "",
               status_code: int = 200) -> Response:
    words = _words(get_ctx(request), info, assistant, result)
    return render(request, "treatment/form.html", status_code=status_code, info=info, card=info.model_card,
                  fields=clinical_fields(_fields(assistant), words["dd"]), arms=assistant.arms, treatment=assistant.info["treatment"],
                  values=values or {}, errors=errors or {}, result=result, chart=chart(result["advice"][0]) if result else None,
                  error=error, **words)


@pages.get("/{bundle_id}")
def page_form(request: Request, bundle_id: str = BUNDLE_ID, example: bool = Query(False), principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    return _form_page(request, info, assistant, values=example_values(_fields(assistant)) if example else {})


@pages.post("/{bundle_id}/advise")
async def page_advise(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    return await run_in_threadpool(_page_advise, request, ctx, principal, bundle_id, form, form.get("explain") == "on")


def _page_advise(request: Request, ctx: ServiceContext, principal: Principal, bundle_id: str, form, explain: bool) -> Response:
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    fields = _fields(assistant)
    row, values, errors = parse_form_row(form, fields)
    if errors:
        return refuse_form(request, ctx, info, fields, errors, lambda message: _form_page(
            request, info, assistant, values=values, errors=errors, error=message, status_code=422))
    result = advise_rows(ctx, principal, bundle_id, [row], explain=explain, top_k=5, via="web", source="form")
    if is_htmx(request):
        words = _words(ctx, info, assistant, result)
        return render(request, "treatment/result.html", result=result, info=info, chart=chart(result["advice"][0]), **words)
    return _form_page(request, info, assistant, values=values, result=result)


PLUGIN = KIT.plugin(
    title="Treatment", summary="A patient's values → expected outcome per treatment arm with intervals, a recommendation and its evidence.",
)
