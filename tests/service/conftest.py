"""A real medassist service on 127.0.0.1 (uvicorn in a thread) with a tiny trained bundle, one
user per role, their API tokens and signed-in browser sessions (httpx clients with cookies)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from medassist.service import create_app
from medassist.settings import Settings
from medassist.store.accounts import new_api_token
from medassist.store.models import User
from medassist.testing.server import PASSWORD, add_user, csrf_of, running_server, sign_in

ROLES = ("admin", "clinician", "researcher", "auditor")


@dataclass
class Site:
    base_url: str
    app: object
    settings: Settings
    bundle_id: str
    user_ids: dict[str, int]
    tokens: dict[str, str]
    browsers: dict[str, httpx.Client] = field(default_factory=dict)
    #: Bundle id by task ("diagnosis-tabular", "diagnosis-image", "treatment", "screening").
    bundle_ids: dict[str, str] = field(default_factory=dict)

    @property
    def db(self):
        return self.app.state.ctx.db

    def api(self, role: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, follow_redirects=False, timeout=30)

    def browser(self, role: str | None) -> httpx.Client:
        if role is None:
            return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30)
        if role not in self.browsers:
            self.browsers[role] = sign_in(self.base_url, role)
        return self.browsers[role]

    def csrf(self, role: str) -> str:
        return csrf_of(self.browser(role).get("/account").text)

    def count(self, model) -> int:
        from sqlalchemy import func, select

        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(model))


def make_site(home: Path, bundle: Path, *, database_url: str | None = None, extra_bundle_dirs: tuple[Path, ...] = (),
              **overrides) -> Iterator[Site]:
    settings = Settings(home=home, bundle_dirs=[bundle.parent, *extra_bundle_dirs], database_url=database_url,
                        login_rate_per_minute=overrides.pop("login_rate_per_minute", 10_000), **overrides)
    app = create_app(settings)
    db = app.state.ctx.db
    user_ids = {role: add_user(db, role, role, PASSWORD) for role in ROLES}
    tokens = {}
    with db.session(write=True) as s:
        for role in ROLES:
            tokens[role] = new_api_token(s, user=s.get(User, user_ids[role]), name="test", days=1)[1]
    bundle_ids = {i.task: i.bundle_id for i in app.state.ctx.catalog.list()}
    bundle_id = bundle_ids["diagnosis-tabular"]
    with running_server(app) as base_url:
        site = Site(base_url=base_url, app=app, settings=settings, bundle_id=bundle_id, user_ids=user_ids, tokens=tokens,
                    bundle_ids=bundle_ids)
        try:
            yield site
        finally:
            for c in site.browsers.values():
                c.close()
            db.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_bundle, request) -> Iterator[Site]:
    """One service per test module (SQLite under a fresh MEDASSIST_HOME); a module may set
    ``SITE_SETTINGS = {...}`` to change settings, and ``SITE_ASSISTANTS = True`` to serve the
    tiny imaging, treatment and screening bundles too."""
    extra = ()
    if getattr(request.module, "SITE_ASSISTANTS", False):
        extra = (next(iter(request.getfixturevalue("assistant_bundles").values())).parent,)
    yield from make_site(tmp_path_factory.mktemp("home"), tiny_bundle, extra_bundle_dirs=extra,
                         **dict(getattr(request.module, "SITE_SETTINGS", {})))


@pytest.fixture
def fresh_site(tmp_path, tiny_bundle, request) -> Iterator[Site]:
    """A service of its own, with settings from ``@pytest.mark.parametrize('fresh_site', [{...}], indirect=True)``."""
    yield from make_site(tmp_path / "home", tiny_bundle, **getattr(request, "param", {}))
