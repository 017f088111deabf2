"""Assistant plugins: each assistant brings its API router, its pages, its nav entry and the
bundle tasks it serves. A new assistant writes its own module (e.g. ``service/screening.py``
with templates in ``templates/screening/``) and adds ONE line to ``PLUGIN_MODULES``; nothing
else in the service changes.

Example (``service/screening.py``)::

    api = APIRouter()        # mounted at /api/v1/screening
    pages = APIRouter()      # mounted at /screening

    @api.post("/{bundle_id}/jobs")
    def submit(bundle_id: str, principal: Principal = Depends(Require(Permission.USE_ASSISTANTS, surface=Surface.API))): ...

    PLUGIN = AssistantPlugin(
        name="screening", title="Screening", summary="Rank a molecule library.",
        tasks=("screening-molecules",), permission=Permission.USE_ASSISTANTS,
        api_router=api, page_router=pages, templates_dir=TEMPLATES / "screening",
    )
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter

from medassist.exceptions import ConfigError
from medassist.service.permissions import Permission

TEMPLATES = Path(__file__).parent / "templates"

#: One line per assistant ("module:attribute" of its AssistantPlugin), in navigation order.
PLUGIN_MODULES: tuple[str, ...] = (
    "medassist.service.diagnosis:PLUGIN",
    "medassist.service.imaging:PLUGIN",
    "medassist.service.treatment:PLUGIN",
    "medassist.service.prognosis:PLUGIN",
    "medassist.service.screening:PLUGIN",
    "medassist.service.cases:PLUGIN",
    "medassist.service.research:PLUGIN",
)


@dataclass(frozen=True, kw_only=True)
class AssistantPlugin:
    """What an assistant adds to the service.

    Attributes:
        name: URL segment and template namespace (``/diagnosis``, ``/api/v1/diagnosis``,
            templates as ``"diagnosis/form.html"``).
        title: Shown in the navigation and on the home page.
        summary: One line on the home page.
        tasks: The bundle tasks (``bundle.json`` "task") this assistant serves.
        permission: Needed to see the nav entry (each route still declares its own).
        api_router: Mounted at ``/api/v1/<name>``.
        page_router: Mounted at ``/<name>``.
        templates_dir: Its Jinja2 templates.
        tool: A tool rather than an assistant (e.g. research: train and evaluate): it serves no
            bundle task, so ``tasks`` may be empty.
    """

    name: str
    title: str
    summary: str
    tasks: tuple[str, ...]
    permission: Permission
    api_router: APIRouter
    page_router: APIRouter
    templates_dir: Path
    tool: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,31}", self.name):
            raise ConfigError(f"Assistant plugin name {self.name!r} must be 2-32 lower-case letters, digits or '-'.")
        if not self.tasks and not self.tool:
            raise ConfigError(f"Assistant plugin '{self.name}' serves no bundle task; list at least one in 'tasks'.")

    @property
    def path(self) -> str:
        return f"/{self.name}"


RESERVED = {"api", "static", "login", "logout", "account", "models", "audit", "admin", "healthz"}


def load_plugins(modules: tuple[str, ...] = PLUGIN_MODULES) -> list[AssistantPlugin]:
    """Import every registered plugin; duplicate names or tasks claimed twice are refused."""
    plugins: list[AssistantPlugin] = []
    names: set[str] = set()
    tasks: dict[str, str] = {}
    for spec in modules:
        module, _, attr = spec.partition(":")
        plugin = getattr(importlib.import_module(module), attr or "PLUGIN")
        if not isinstance(plugin, AssistantPlugin):
            raise ConfigError(f"{spec} is not an AssistantPlugin.")
        if plugin.name in names or plugin.name in RESERVED:
            raise ConfigError(f"Assistant plugin name '{plugin.name}' is already taken.")
        for task in plugin.tasks:
            if task in tasks:
                raise ConfigError(f"Bundle task '{task}' is claimed by both '{tasks[task]}' and '{plugin.name}'.")
            tasks[task] = plugin.name
        names.add(plugin.name)
        plugins.append(plugin)
    return plugins
