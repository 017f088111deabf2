"""The plugin kit: ``BundlePlugin``, the preamble every bundle-serving plugin shares (its routers,
its bundles by id, the bundle list on ``GET /api/v1/<name>`` and the ``/<name>`` index page, the
redirect after a form, its ``AssistantPlugin``), and small helpers: the bundle reference every
answer carries, a private scratch folder for files an assistant must read from disk, and the
checks on JSON table rows (one patient's values) that the treatment plugin shares with forms.

Example (``service/imaging.py``)::

    KIT = BundlePlugin(name="imaging", tasks=("diagnosis-image",), noun="image-diagnosis")
    KIT.add_index_routes(summary="Image-diagnosis model bundles on offer", template="imaging/index.html")

    @KIT.api.post("/{bundle_id}/predict")
    def predict(request: Request, bundle_id: str = KIT.bundle_id, principal: Principal = Depends(KIT.use_api)):
        info = KIT.info(get_ctx(request), bundle_id)      # 404 unless it is one of this plugin's bundles
        ...

    PLUGIN = KIT.plugin(title="Imaging", summary="An image → calibrated probabilities and a Grad-CAM map.")

Nothing here is ever named after a client's file: scratch files get fixed names inside a fresh
folder under ``MEDASSIST_HOME/work`` (owner only), removed when the request ends.
"""

from __future__ import annotations

import base64
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from medassist.exceptions import DataError
from medassist.featurizers.tabular import OTHER, category_key
from medassist.service.auth import Principal, Require, Surface
from medassist.service.bundles import BundleInfo
from medassist.service.context import DISCLAIMER, ServiceContext, get_ctx
from medassist.service.permissions import Permission
from medassist.service.plugins import TEMPLATES, AssistantPlugin
from medassist.service.rendering import is_htmx, render

MAX_TEXT = 200  # characters of a form field
A = TypeVar("A")


def see_other(request: Request, target: str) -> Response:
    """After a form: htmx follows ``HX-Redirect``, a plain browser a 303."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@dataclass(kw_only=True)
class BundlePlugin:
    """What a plugin that serves model bundles of ``tasks`` repeats, written once.

    Attributes:
        name: the plugin's name (``/<name>``, ``/api/v1/<name>``, ``templates/<name>/``).
        tasks: the bundle tasks it serves.
        noun: names its bundles in messages ("No <noun> model bundle with id ...").
        permission: the role permission its routes need (``use_api``/``use_page`` check it).
        api, pages: its routers, mounted at ``/api/v1/<name>`` and ``/<name>``.
    """

    name: str
    tasks: tuple[str, ...]
    noun: str
    permission: Permission = Permission.USE_ASSISTANTS
    api: APIRouter = field(default_factory=APIRouter)
    pages: APIRouter = field(default_factory=APIRouter)

    def __post_init__(self) -> None:
        self.use_api = Require(self.permission, surface=Surface.API)
        self.use_page = Require(self.permission, surface=Surface.PAGE)
        #: The ``{bundle_id}`` path parameter of its routes.
        self.bundle_id = PathParam(pattern=r"^[0-9a-f]{16}$", description=f"16 hex digits (from GET /api/v1/{self.name})")

    def bundles(self, ctx: ServiceContext) -> list[BundleInfo]:
        return ctx.catalog.list(tasks=self.tasks)

    def info(self, ctx: ServiceContext, bundle_id: str) -> BundleInfo:
        """One of its bundles by id; any other id (unknown, or another task's bundle) is a 404."""
        info = ctx.catalog.get(bundle_id)
        if info is None or info.task not in self.tasks:
            raise HTTPException(404, f"No {self.noun} model bundle with id {bundle_id}.")
        return info

    def cached(self, ctx: ServiceContext, info: BundleInfo, make: Callable[[Any], A]) -> A:
        """One ``make(bundle)`` (an assistant) per loaded bundle, made again when the catalog reloads it."""
        cache = ctx.state.setdefault(self.name, {}).setdefault("assistants", {})
        bundle = ctx.catalog.load(info)
        hit = cache.get(info.bundle_id)
        if hit is None or hit[0] is not bundle:
            hit = cache[info.bundle_id] = (bundle, make(bundle))
        return hit[1]

    def listing(self, ctx: ServiceContext) -> dict[str, Any]:
        """The answer of ``GET /api/v1/<name>``: the disclaimer and its bundles' summaries."""
        return {"disclaimer": DISCLAIMER, "models": [i.summary() for i in self.bundles(ctx)]}

    def add_index_routes(self, *, summary: str, template: str,
                         page_extra: Callable[[ServiceContext, Principal], dict[str, Any]] | None = None) -> None:
        """``GET /api/v1/<name>`` (the bundle list) and ``GET /<name>`` (``template`` with ``bundles``
        and whatever ``page_extra`` adds)."""

        @self.api.get("", summary=summary)
        def api_list(request: Request, principal: Principal = Depends(self.use_api)) -> dict[str, Any]:
            return self.listing(get_ctx(request))

        @self.pages.get("")
        def page_index(request: Request, principal: Principal = Depends(self.use_page)) -> Response:
            ctx = get_ctx(request)
            extra = page_extra(ctx, principal) if page_extra is not None else {}
            return render(request, template, bundles=self.bundles(ctx), **extra)

    def plugin(self, *, title: str, summary: str, tool: bool = False) -> AssistantPlugin:
        """Its ``AssistantPlugin`` (a tool serves no task of its own, see ``AssistantPlugin.tool``)."""
        return AssistantPlugin(name=self.name, title=title, summary=summary, tasks=() if tool else self.tasks, tool=tool,
                               permission=self.permission, api_router=self.api, page_router=self.pages,
                               templates_dir=TEMPLATES / self.name)


def bundle_ref(info: BundleInfo) -> dict[str, str]:
    return {"id": info.bundle_id, "name": info.name, "task": info.task, "created": info.created, "data_source": info.data_source}


@contextmanager
def scratch_dir(ctx: ServiceContext, prefix: str) -> Iterator[Path]:
    """A fresh owner-only folder under ``MEDASSIST_HOME/work``, deleted afterwards."""
    root = ctx.settings.home / "work"
    root.mkdir(mode=0o700, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def scrub_path(message: str, path: Path, shown: str) -> str:
    """An assistant's message names the scratch file; the user knows it by their file name."""
    return message.replace(str(path), shown).replace(str(path.parent), "upload")


def check_category(fz: Any, column: str, value: Any, *, where: str) -> None:
    """A category the model never saw is refused (unless training collapsed rare levels into
    'other'): a typo or an injected string must not pass as a patient's value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    levels = fz.categories_.get(column, [])
    if category_key(value) in levels or OTHER in levels:  # 1.0 is the code 1
        return
    known = [v for v in levels if not v.startswith("__")]
    shown = repr(str(value)[:40]) + ("…" if len(str(value)) > 40 else "")
    raise DataError(f"{where}, column '{column}': {shown} is not a value the model knows "
                    f"(expected one of: {', '.join(known[:20])}; send null if it is not known).")


def check_row_keys(row: dict[str, Any], i: int, *, allowed: set[str], columns: list[str], source: str, noun: str = "column") -> None:
    """Row ``i`` (from 1) of a request must give every one of ``columns`` (null = unknown) and
    nothing outside ``allowed``; messages name the row and call the keys ``noun``s."""
    if not allowed.issuperset(row):
        unknown = sorted(set(row) - allowed)
        raise DataError(f"{source}: row {i} has {noun}(s) {', '.join(repr(c[:60]) for c in unknown[:5])} that the model "
                        f"does not use (expected: {', '.join(columns)}).")
    absent = [c for c in columns if c not in row]
    if absent:
        raise DataError(f"{source}: row {i} lacks {noun}(s) {', '.join(repr(c) for c in absent[:10])}; "
                        "send null for a value that is not known (it is then imputed and counted).")


def check_rows(rows: list[dict[str, Any]], *, fz: Any, columns: list[str], extra: set[str], max_rows: int,
               source: str) -> list[dict[str, Any]]:
    """Every row must give every model input (null = unknown, imputed), nothing else; numbers
    must be finite numbers and categories ones the model knows. Returns clean copies."""
    if len(rows) > max_rows:
        raise DataError(f"{source}: {len(rows)} rows in one request; at most {max_rows} are accepted.")
    allowed = set(columns) | extra
    numeric = set(fz.numeric_)
    clean = []
    for i, row in enumerate(rows, start=1):
        check_row_keys(row, i, allowed=allowed, columns=columns, source=source, noun="field")
        out: dict[str, Any] = {}
        for c in columns:
            v = row[c]
            if c in numeric:
                if v is not None and (isinstance(v, str) or not isinstance(v, (int, float)) or not math.isfinite(float(v))):
                    raise DataError(f"{source}: row {i}, field '{c}': expected a number or null, got {str(v)[:60]!r}.")
                out[c] = None if v is None else float(v)
            else:
                if v is not None and not isinstance(v, str):
                    v = str(v)
                check_category(fz, c, v, where=f"{source}: row {i}")
                out[c] = v
        for c in extra:
            if c in row:
                ref = row[c]
                if ref is not None and len(str(ref)) > 64:
                    raise DataError(f"{source}: row {i}, field '{c}': longer than 64 characters.")
                out[c] = ref
        clean.append(out)
    return clean


def input_fields(fz: Any, columns: list[str]) -> list[dict[str, Any]]:
    """The form fields of a table model: numeric (training median) or categorical (its levels)."""
    fields = []
    for i, c in enumerate(columns):
        if c in fz.numeric_:
            fields.append({"index": i, "column": c, "kind": "numeric", "median": fz.median_.get(c)})
        else:
            cats = [v for v in fz.categories_.get(c, []) if not v.startswith("__")]
            fields.append({"index": i, "column": c, "kind": "categorical", "categories": cats})
    return fields


def example_values(fields: list[dict[str, Any]]) -> dict[int, str]:
    """A form's example: training medians and each category's first level (a neutral starting
    point, not a patient)."""
    values: dict[int, str] = {}
    for f in fields:
        if f["kind"] == "numeric" and f["median"] is not None:
            values[f["index"]] = f"{f['median']:g}"
        elif f["kind"] == "categorical" and f["categories"]:
            values[f["index"]] = f["categories"][0]
    return values


def parse_form_row(form: Any, fields: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[int, str], dict[int, str]]:
    """(row, values as typed, errors by field index) from a submitted form (``c<index>`` names)."""
    row: dict[str, Any] = {}
    values: dict[int, str] = {}
    errors: dict[int, str] = {}
    for f in fields:
        raw = form.get(f"c{f['index']}", "")
        raw = raw.strip() if isinstance(raw, str) else ""
        values[f["index"]] = raw[:MAX_TEXT]
        if raw == "":
            row[f["column"]] = None
        elif f["kind"] == "numeric":
            try:
                v = float(raw)
            except ValueError:
                errors[f["index"]] = f"expected a number, got {raw[:40]!r}"
                continue
            if not math.isfinite(v):
                errors[f["index"]] = "expected a finite number"
                continue
            row[f["column"]] = v
        elif raw not in f["categories"]:
            errors[f["index"]] = "not one of the offered values"
        else:
            row[f["column"]] = raw
    return row, values, errors
