"""Sign-in, lockout, rate limit, CSRF, cookies, bearer tokens, one-time passwords, headers,
and the settings that refuse unsafe service configurations."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from pydantic import ValidationError

from medassist.settings import Settings
from medassist.store.audit import verify_chain
from medassist.store.models import ApiToken, AuditEntry, User, utcnow
from medassist.testing.server import PASSWORD, add_user, csrf_of, login_token_of, sign_in


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    token = login_token_of(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password, "login_token": token, "next": "/"})


@pytest.mark.parametrize("fresh_site", [{"login_max_failures": 3, "login_lockout_s": 600}], indirect=True)
def test_lockout_after_failures_refuses_even_the_right_password_until_unlocked(fresh_site):
    site = fresh_site
    add_user(site.db, "dana", "clinician", PASSWORD)
    anon = httpx.Client(base_url=site.base_url, timeout=30)
    for _ in range(3):
        r = _login(anon, "dana", "wrong password!!")
        assert r.status_code == 401 and "Sign-in failed" in r.text
    with site.db.session() as s:
        user = s.query(User).filter_by(username="dana").one()
        assert user.locked_until is not None and user.locked_until > utcnow() + timedelta(seconds=500)
    assert _login(anon, "dana", PASSWORD).status_code == 401  # locked: the right password does not help
    with site.db.session() as s:
        actions = [e.action for e in s.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-4:] == ["login.failed", "login.failed", "login.failed", "login.refused"]
    # An admin unlocks through the web app; then the right password works.
    admin = site.browser("admin")
    page = admin.get("/admin/users")
    assert "locked" in page.text
    with site.db.session() as s:
        dana_id = s.query(User).filter_by(username="dana").one().id
    r = admin.post(f"/admin/users/{dana_id}/unlock", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200
    assert _login(anon, "dana", PASSWORD).status_code == 303


@pytest.mark.parametrize("fresh_site", [{"login_rate_per_minute": 4}], indirect=True)
def test_sign_in_attempts_per_client_are_rate_limited(fresh_site):
    anon = httpx.Client(base_url=fresh_site.base_url, timeout=30)
    statuses = [_login(anon, f"nobody{i}", "x" * 12).status_code for i in range(6)]
    assert statuses[:4] == [401] * 4
    assert statuses[4:] == [429, 429]
    r = _login(anon, "clinician", PASSWORD)  # even a good password waits
    assert r.status_code == 429 and r.headers["retry-after"] == "60"


def test_unknown_user_and_wrong_password_get_the_same_answer(site):
    anon = httpx.Client(base_url=site.base_url, timeout=30)
    a, b = _login(anon, "no-such-user", "whatever-password"), _login(anon, "researcher", "whatever-password")
    assert a.status_code == b.status_code == 401
    strip = lambda t: t.split('name="login_token" value="')[0]  # noqa: E731  (the token differs)
    assert strip(a.text) == strip(b.text)


def test_forms_without_the_session_csrf_token_are_refused(site):
    client = site.browser("admin")
    good = csrf_of(client.get("/admin/users").text)
    for data, headers in [
        ({"username": "eve1", "role": "admin"}, {}),                                   # no token
        ({"username": "eve2", "role": "admin", "csrf_token": "forged"}, {}),           # wrong token
        ({"username": "eve3", "role": "admin", "csrf_token": good}, {"Origin": "https://evil.example"}),  # cross-site
        ({"username": "eve4", "role": "admin", "csrf_token": good}, {"Sec-Fetch-Site": "cross-site"}),
    ]:
        r = client.post("/admin/users", data=data, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.text, data
    with site.db.session() as s:
        assert s.query(User).filter(User.username.like("eve%")).count() == 0
    # The sign-in form has its own token (before any session exists).
    anon = httpx.Client(base_url=site.base_url, timeout=30)
    anon.get("/login")
    r = anon.post("/login", data={"username": "admin", "password": PASSWORD, "login_token": "forged", "next": "/"})
    assert r.status_code == 403 and "medassist_session" not in r.headers.get("set-cookie", "")


def test_session_cookie_flags_and_logout(site):
    anon = httpx.Client(base_url=site.base_url, timeout=30)
    r = _login(anon, "researcher", PASSWORD)
    cookie = r.headers["set-cookie"]
    assert "medassist_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # dev profile over http://127.0.0.1
    assert anon.get("/models").status_code == 200
    old = anon.cookies.get("medassist_session")
    r = anon.post("/logout", data={"csrf_token": csrf_of(anon.get("/account").text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    replay = httpx.Client(base_url=site.base_url, cookies={"medassist_session": old}, timeout=30)
    assert replay.get("/models").headers["location"].startswith("/login?next=")


def test_prod_profile_cookies_are_secure_with_host_prefix(tmp_path, tiny_bundle):
    from medassist.service import create_app
    from medassist.testing.server import running_server

    settings = Settings(home=tmp_path / "h", profile="prod", secret_key="s" * 8 + "-an-unguessable-secret-for-tests", bundle_dirs=[tiny_bundle.parent])
    app = create_app(settings)
    add_user(app.state.ctx.db, "pat", "clinician", PASSWORD)
    with running_server(app) as base:
        anon = httpx.Client(base_url=base, timeout=30)
        page = anon.get("/login")
        assert "__Host-medassist_login=" in page.headers["set-cookie"] and "Secure" in page.headers["set-cookie"]
        assert "strict-transport-security" in page.headers
        token = login_token_of(page.text)  # httpx will not send a Secure cookie over http: pass it by hand
        nonce = page.headers["set-cookie"].split("__Host-medassist_login=")[1].split(";")[0]
        r = anon.post("/login", data={"username": "pat", "password": PASSWORD, "login_token": token, "next": "/"},
                      headers={"Cookie": f"__Host-medassist_login={nonce}"})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-medassist_session=") and "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
    app.state.ctx.db.dispose()


def test_security_headers_on_pages_and_api(site):
    for r in (httpx.get(site.base_url + "/login"), site.api("clinician").get("/api/v1/me")):
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
    assert "server" not in httpx.get(site.base_url + "/healthz").headers  # as `medassist serve` runs it


def test_api_tokens_revoked_expired_or_garbage_get_401(site):
    api = site.api("researcher")
    assert api.get("/api/v1/me").json()["role"] == "researcher"
    with site.db.session(write=True) as s:
        from medassist.store.accounts import new_api_token

        user = s.get(User, site.user_ids["researcher"])
        revoked, revoked_plain = new_api_token(s, user=user, name="r", days=1)
        expired, expired_plain = new_api_token(s, user=user, name="e", days=1)
        revoked.revoked_at = utcnow()
        expired.expires_at = utcnow() - timedelta(seconds=1)
    for bad in (revoked_plain, expired_plain, "mat_" + "A" * 43, "garbage", "x" * 500):
        r = httpx.get(site.base_url + "/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401 and r.json()["detail"].startswith("Sign in")
    # A session cookie is not an API credential.
    browser = site.browser("researcher")
    assert browser.get("/api/v1/me").status_code == 401


def test_a_one_time_password_must_be_changed_before_anything_else(site):
    add_user(site.db, "newbie", "clinician", "temporary-pass-123", must_change_password=True)
    client = httpx.Client(base_url=site.base_url, timeout=30)
    r = _login(client, "newbie", "temporary-pass-123")
    assert r.headers["location"] == "/account?first=1"
    r = client.get("/diagnosis")
    assert r.status_code == 303 and r.headers["location"] == "/account?first=1"
    page = client.get("/account?first=1")
    assert "one-time password" in page.text
    csrf = csrf_of(page.text)
    r = client.post("/account/password", data={"csrf_token": csrf, "current": "temporary-pass-123", "new": "short", "confirm": "short"})
    assert r.status_code == 422 and "at least 12 characters" in r.text
    r = client.post("/account/password", data={"csrf_token": csrf, "current": "temporary-pass-123",
                                               "new": "my own new password", "confirm": "my own new password"})
    assert r.status_code == 200 and "was changed" in r.text
    assert client.get("/diagnosis").status_code == 200
    with site.db.session() as s:
        assert verify_chain(s).ok


def test_api_refuses_a_user_who_still_has_a_one_time_password(site):
    uid = add_user(site.db, "apinew", "clinician", "temporary-pass-456", must_change_password=True)
    with site.db.session(write=True) as s:
        from medassist.store.accounts import new_api_token

        plain = new_api_token(s, user=s.get(User, uid), name="t", days=1)[1]
    r = httpx.get(site.base_url + "/api/v1/me", headers={"Authorization": f"Bearer {plain}"})
    assert r.status_code == 403 and "one-time password" in r.json()["detail"]


def test_admin_creates_a_user_whose_one_time_password_works_once_changed(site):
    admin = site.browser("admin")
    r = admin.post("/admin/users", data={"csrf_token": csrf_of(admin.get("/admin/users").text), "username": "ward7", "role": "clinician"})
    assert r.status_code == 200
    password = r.text.split('id="one-time-password">')[1].split("<")[0]
    assert len(password) >= 12
    client = sign_in(site.base_url, "ward7", password)
    assert client.get("/").headers["location"] == "/account?first=1"
    with site.db.session() as s:
        stored = s.query(User).filter_by(username="ward7").one().password_hash
    assert stored.startswith("$argon2id$") and password not in stored


def test_token_created_in_the_web_app_is_shown_once_and_works(site):
    browser = site.browser("auditor")
    r = browser.post("/account/tokens", data={"csrf_token": site.csrf("auditor"), "name": "siem"})
    token = r.text.split('id="new-token">')[1].split("<")[0]
    assert token.startswith("mat_")
    assert token not in browser.get("/account").text
    r = httpx.get(site.base_url + "/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["ok"] is True
    with site.db.session() as s:
        assert all(token not in (t.token_hash, t.prefix) for t in s.query(ApiToken))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"profile": "prod"}, "secret_key"),
    ({"profile": "prod", "secret_key": "changethis"}, "secret_key"),
    ({"profile": "prod", "secret_key": "x" * 40, "host": "0.0.0.0", "debug": True}, "debug"),
    ({"host": "0.0.0.0"}, "loopback"),
])
def test_unsafe_service_settings_are_refused(overrides, match):
    with pytest.raises(ValidationError, match=match):
        Settings(**overrides)


def test_safe_prod_settings_are_accepted():
    s = Settings(profile="prod", secret_key="k" * 40, host="0.0.0.0")
    assert s.cookie_secure and s.host == "0.0.0.0"
    assert not Settings().cookie_secure
