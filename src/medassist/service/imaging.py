"""The diagnosis assistant for images as a service plugin.

API (``/api/v1/imaging``, bearer token, role with ``assistants.use``):
    GET  /                     image-diagnosis bundles on offer
    POST /{bundle_id}/predict  a PNG/JPEG, DICOM or NIfTI (.nii/.nii.gz) upload → calibrated class
                               probabilities, confidence, notes, a Grad-CAM overlay (PNG data URI)
Pages (``/imaging``): a bundle list and an upload form; the result is swapped in by htmx (or
rendered as a whole page without JavaScript).

The bytes are sniffed (``service/uploads.py``) before anything reads them; a gzip upload must be
named ``.nii.gz`` and inflate (within a cap) to a NIfTI header. The assistant reads the image from
a scratch file with a fixed name; nothing is written under the client's file name.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from fastapi import Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medassist.assistants.imaging import ImagingAssistant
from medassist.exceptions import DataError
from medassist.service.auth import Principal
from medassist.service.bundles import BundleInfo
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.plugin_common import BundlePlugin, bundle_ref, data_uri, scratch_dir, scrub_path
from medassist.service.predictions import record_prediction
from medassist.service.rendering import is_htmx, render
from medassist.service.uploads import CheckedUpload, FileKind, read_upload, sniff

NAME = "imaging"
TASKS = ("diagnosis-image",)
KIT = BundlePlugin(name=NAME, tasks=TASKS, noun="image-diagnosis")
USE_API, USE_PAGE, BUNDLE_ID = KIT.use_api, KIT.use_page, KIT.bundle_id
ACCEPTED = {FileKind.PNG, FileKind.JPEG, FileKind.DICOM, FileKind.NIFTI, FileKind.GZIP}
SUFFIX = {FileKind.PNG: ".png", FileKind.JPEG: ".jpg", FileKind.DICOM: ".dcm", FileKind.NIFTI: ".nii"}
#: A picture larger than this (width × height) is refused before it is decoded (decompression bombs).
MAX_PIXELS = 4096 * 4096
#: A .nii.gz may inflate to at most this many times the upload limit.
MAX_INFLATE = 8

api, pages = KIT.api, KIT.pages
_info = KIT.info


def _assistant(ctx: ServiceContext, info: BundleInfo) -> ImagingAssistant:
    """The catalog caches the loaded bundle (reloaded when it changes); the assistant is a thin wrapper."""
    return ImagingAssistant(bundle=ctx.catalog.load(info))


def _inflate_nifti(upload: CheckedUpload, *, max_bytes: int) -> bytes:
    if not upload.filename.lower().endswith(".nii.gz"):
        raise HTTPException(415, f"Upload '{upload.filename}' is a gzip archive; this route accepts a gzipped image only as "
                                 "NIfTI named '.nii.gz'.")
    limit = max_bytes * MAX_INFLATE
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(upload.data, limit + 1)
    except zlib.error as e:
        raise HTTPException(422, f"Upload '{upload.filename}' is not a readable gzip file ({e}).") from e
    if len(data) > limit or inflater.unconsumed_tail:
        raise HTTPException(413, f"Upload '{upload.filename}' inflates to more than {limit:,} bytes; it is refused.")
    if sniff(data) is not FileKind.NIFTI:
        raise HTTPException(415, f"Upload '{upload.filename}' is named like NIfTI but its content has no NIfTI header.")
    return data


def _picture_size(data: bytes, kind: FileKind) -> tuple[int, int] | None:
    if kind is FileKind.PNG and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if kind is FileKind.JPEG:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                return im.size
        except (UnidentifiedImageError, OSError):
            return None
    return None


def image_bytes(upload: CheckedUpload, *, max_bytes: int) -> tuple[bytes, str]:
    """(bytes to hand the assistant, the file suffix they need), after the format checks."""
    if upload.kind is FileKind.GZIP:
        return _inflate_nifti(upload, max_bytes=max_bytes), ".nii"
    if upload.kind is FileKind.NIFTI and not upload.filename.lower().endswith(".nii"):
        raise HTTPException(415, f"Upload '{upload.filename}' is a NIfTI image; name it '.nii' (or '.nii.gz' when gzipped).")
    size = _picture_size(upload.data, upload.kind)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise HTTPException(413, f"Upload '{upload.filename}' is {size[0]}×{size[1]} pixels; at most {MAX_PIXELS:,} pixels are accepted.")
    return upload.data, SUFFIX[upload.kind]


def _calibration(assistant: ImagingAssistant) -> dict[str, Any]:
    cal = assistant.bundle.calibration or {}
    return {"method": cal.get("method", "temperature scaling"), "temperature": cal.get("temperature"),
            "fitted_on": cal.get("fitted_on"), "test_ece_calibrated": cal.get("test_ece_calibrated")}


def predict_upload(ctx: ServiceContext, principal: Principal, bundle_id: str, upload: CheckedUpload, *, explain: bool,
                   via: str) -> dict[str, Any]:
    """Check → write a scratch file → the assistant's prediction (+ Grad-CAM) → record → answer."""
    info = _info(ctx, bundle_id)
    assistant = _assistant(ctx, info)
    data, suffix = image_bytes(upload, max_bytes=ctx.settings.max_upload_bytes)
    with scratch_dir(ctx, "imaging-") as work:
        path = work / f"image{suffix}"
        path.write_bytes(data)
        cam = work / "gradcam.png"
        try:
            raw = assistant.predict(path, explain_path=cam if explain else None)
        except DataError as e:
            raise DataError(scrub_path(str(e), path, upload.filename)) from None
        overlay = data_uri(cam.read_bytes(), "image/png") if explain and cam.is_file() else None
    probs = {str(k): float(v) for k, v in raw["probabilities"].items()}
    label = raw.get("prediction")
    result = {
        "file": upload.filename, "format": raw["format"], "n_slices": raw["n_slices"], "task": raw["task"],
        "prediction": label, "findings": raw.get("findings"), "probabilities": probs,
        "confidence": probs.get(label) if label is not None else None,
        "per_slice": raw.get("per_slice"), "aggregation": raw.get("aggregation"), "intensity": raw.get("intensity"),
        "notes": [scrub_path(n, path, upload.filename) for n in raw.get("notes", [])], "warning": raw.get("warning"),
        "warnings": [scrub_path(w, path, upload.filename) for w in raw.get("warnings", [])],
        "explanation": ({k: v for k, v in raw["explanation"].items() if k != "png"} if raw.get("explanation") else None),
    }
    rec = record_prediction(
        ctx, principal, assistant=NAME, bundle_id=info.bundle_id, task=info.task,
        input_value={"file": upload.filename, "kind": upload.kind.value, "bytes": len(upload.data),
                     "data_b64": data_uri(upload.data, "application/octet-stream")},
        input_sha256=upload.sha256, output=result, n_rows=1, via=via,
    )
    return {"disclaimer": DISCLAIMER, "bundle": bundle_ref(info), "calibration": _calibration(assistant), "result": result,
            "overlay_png": overlay, "audit_id": rec.audit_id, "prediction_id": rec.prediction_id}


# --------------------------------------------------------------------------------------------
# REST API


KIT.add_index_routes(summary="Image-diagnosis model bundles on offer", template="imaging/index.html")


@api.post("/{bundle_id}/predict", summary="Classify one uploaded image (PNG/JPEG, DICOM, NIfTI), with Grad-CAM (audited)")
async def api_predict(request: Request, file: UploadFile = File(...), bundle_id: str = BUNDLE_ID,
                      explain: bool = Query(True, description="Add a Grad-CAM overlay (PNG data URI)"),
                      principal: Principal = Depends(USE_API)) -> dict[str, Any]:
    ctx = get_ctx(request)
    upload = await read_upload(file, expected=ACCEPTED, max_bytes=ctx.settings.max_upload_bytes)
    return await run_in_threadpool(predict_upload, ctx, principal, bundle_id, upload, explain=explain, via="api")


# --------------------------------------------------------------------------------------------
# Pages


def _classes(info: BundleInfo) -> list[str]:
    return [str(c) for c in info.model_card.get("classes") or []]


@pages.get("/{bundle_id}")
def page_form(request: Request, bundle_id: str = BUNDLE_ID, principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    info = _info(ctx, bundle_id)
    return render(request, "imaging/form.html", info=info, card=info.model_card, classes=_classes(info), result=None)


@pages.post("/{bundle_id}/predict")
async def page_predict(request: Request, bundle_id: str = BUNDLE_ID, file: UploadFile = File(...),
                       principal: Principal = Depends(USE_PAGE)) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    explain = form.get("explain") == "on"
    upload = await read_upload(file, expected=ACCEPTED, max_bytes=ctx.settings.max_upload_bytes)
    result = await run_in_threadpool(predict_upload, ctx, principal, bundle_id, upload, explain=explain, via="web")
    info = _info(ctx, bundle_id)
    if is_htmx(request):
        return render(request, "imaging/result.html", result=result, info=info)
    return render(request, "imaging/form.html", info=info, card=info.model_card, classes=_classes(info), result=result)


PLUGIN = KIT.plugin(
    title="Imaging", summary="An image (PNG/JPEG, DICOM, NIfTI) → calibrated probabilities and a Grad-CAM map of where the model looked.",
)
