"""What every request handler needs, built once by ``create_app`` and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2
from fastapi import Request

from medassist.privacy.crypto import FieldCipher
from medassist.service.bundles import BundleCatalog
from medassist.service.plugins import AssistantPlugin
from medassist.settings import Settings
from medassist.store.db import Database

DISCLAIMER = "Decision support, not a medical device."


@dataclass(kw_only=True)
class ServiceContext:
    settings: Settings
    db: Database
    cipher: FieldCipher
    catalog: BundleCatalog
    secret: bytes
    templates: jinja2.Environment
    plugins: list[AssistantPlugin]
    #: Per-plugin runtime state (caches, batchers), keyed by plugin name.
    state: dict[str, Any] = field(default_factory=dict)

    def plugin_for_task(self, task: str) -> AssistantPlugin | None:
        return next((p for p in self.plugins if task in p.tasks), None)


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx
