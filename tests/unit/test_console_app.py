"""The console's answers that need no store: cookie flags over TLS and plain HTTP, the security headers, and the
error pages (a store that does not answer is faked here; the browser tests use the real stack)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from serving.console import app as console_app
from serving.db import Unavailable


@pytest.fixture
def state():  # noqa: ANN201
    saved = dict(console_app._state)
    yield console_app._state
    console_app._state.clear()
    console_app._state.update(saved)


@pytest.mark.parametrize(("base", "secure"), [("https://testserver", True), ("http://testserver", False)])
def test_the_sign_in_cookie_is_httponly_strict_and_secure_over_tls(base: str, secure: bool) -> None:
    with TestClient(console_app.console, base_url=base) as client:
        page = client.get("/sign-in")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert ("; secure" in cookie) is secure
    assert page.headers["content-security-policy"] == console_app.CSP
    assert "'unsafe-inline'" not in console_app.CSP and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


class _Sessions:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get(self, _sid: str | None) -> None:
        raise self.exc


def test_a_store_that_does_not_answer_is_a_503_page_naming_it(state) -> None:  # noqa: ANN001
    state["sessions"] = _Sessions(Unavailable("postgres", "connection refused"))
    with TestClient(console_app.console, raise_server_exceptions=False) as client:
        page = client.get("/leads", cookies={"ls_session": "x"})
    assert page.status_code == 503 and "PostgreSQL did not answer" in page.text
    assert "Traceback" not in page.text and "connection refused" not in page.text


def test_anything_else_is_a_500_page_with_a_reference_never_a_trace(state) -> None:  # noqa: ANN001
    state["sessions"] = _Sessions(RuntimeError("secret internals"))
    with TestClient(console_app.console, raise_server_exceptions=False) as client:
        page = client.get("/leads", cookies={"ls_session": "x"})
    assert page.status_code == 500 and "reference" in page.text
    assert "secret internals" not in page.text and "Traceback" not in page.text


def test_unknown_pages_are_a_404_page() -> None:
    with TestClient(console_app.console) as client:
        page = client.get("/no-such-page")
    assert page.status_code == 404 and "There is no such page here." in page.text


def test_a_method_a_page_does_not_take_is_a_405_naming_the_allowed_ones() -> None:
    with TestClient(console_app.console) as client:
        page = client.request("TRACE", "/privacy/erase")
    assert page.status_code == 405 and page.headers["allow"] == "POST"
    assert all(not getattr(route, "include_in_schema", False) for route in console_app.console.routes
               if hasattr(route, "methods"))
