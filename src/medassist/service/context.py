"""What every request handler needs, built once by ``create_app`` and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import Request

from medassist.privacy.crypto import FieldCipher
from medassist.service.bundles import BundleCatalog
from medassist.service.plugins import AssistantPlugin
from medassist.settings import Settings
from medassist.store.audit import append_entry
from medassist.store.db import Database
from medassist.store.models import User

if TYPE_CHECKING:
    from medassist.service.auth import Principal

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

    def audit(self, principal: Principal, *, action: str, bundle_id: str | None = None, input_sha256: str | None = None,
              detail: dict[str, Any] | None = None) -> int:
        """Append one audit-log entry for ``principal`` in its own transaction; returns its id.
        ``detail`` must not hold PHI (counts, statuses, names of things)."""
        with self.db.session(write=True) as s:
            return append_entry(s, user=s.get(User, principal.user_id), action=action, bundle_id=bundle_id,
                                input_sha256=input_sha256, detail=detail).id


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx
