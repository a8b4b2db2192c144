"""The console's routes, mounted on the scoring service at /console (serving/service.py).

    GET  /console/               to the leads when signed in, else to the sign-in page
    GET  /console/sign-in        the form: an access token or an API key
    POST /console/sign-in        exchanges it for a session (serving/console/sessions.py)
    POST /console/sign-out       ends the session (its form token required)
    GET  /console/leads          the tenant's most recently active leads ranked best first by /rank's engine,
                                 with tier, score, explanation, last activity; filters by tier and by the model's
                                 source and city features
    GET  /console/leads/{id}     one lead: score, contributions chart, consent per purpose, messages, score history
    GET  /console/privacy        (privacy officers) open requests with due dates; POST .../export, .../erase,
                                 .../verify-ledger: a lead's export, its erasure with the receipt, the ledger check
    GET  /console/models         (data scientists) champion and challenger side by side, drift and realized quality
                                 from the monitor, alerts firing, links to the MLflow and Evidently UIs

Pages are HTML rendered on the server (Jinja2, every value escaped); one small script of the project's own shows
progress; no asset comes from outside. Every answer carries a Content-Security-Policy without inline script or
style, and errors are a page with one readable line, never a trace.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.console import views
from serving.console.sessions import COOKIE, PRE_COOKIE, Session, SessionStore, exchange, same

log = logging.getLogger("leadscore.console")
BASE = "/console"
HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def is_lead_id(value: str) -> bool:
    """What a store may hold as a CRM's lead id (compliance.erase.check_ids: 1-200 characters, no control
    characters or surrounding spaces), less '/', which LeadScore keeps for tenants."""
    from compliance.erase import PrivacyError, check_ids

    try:
        check_ids([value])
    except PrivacyError:
        return False
    return "/" not in value


# pages for people, not an API: no route enters the service's OpenAPI document (include_in_schema=False)
console = FastAPI(title="LeadScore console", openapi_url=None, docs_url=None, redoc_url=None)
console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape on for .html
_state: dict[str, Any] = {}


class Problem(Exception):
    """A page that says one readable line with its status."""

    def __init__(self, status: int, title: str, line: str) -> None:
        super().__init__(line)
        self.status, self.title, self.line = status, title, line


def attach(service: Any, settings: Any) -> None:  # noqa: ANN401 - serving.service.LeadScorer, Settings
    """Serve the console from this worker's service (its engine, verifiers and model thread)."""
    from serving.db import Db

    hours = float(settings.env.get("LEADSCORE_CONSOLE_SESSION_H", "8"))
    _state.update(service=service, settings=settings,
                  sessions=SessionStore(Db(settings, role="console"), ttl_s=hours * 3600),
                  db=Db(settings, role="console", statement_timeout_ms=5000),
                  limit=int(settings.env.get("LEADSCORE_CONSOLE_LEADS", "1000")))


@console.middleware("http")
async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN201
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.url.path.startswith(f"{BASE}/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def page(request: Request, name: str, status: int = 200, session: Session | None = None, **context: Any) -> Response:  # noqa: ANN401
    return templates.TemplateResponse(request, name, {"base": BASE, "session": session, **context},
                                      status_code=status)


def _problem_page(request: Request, problem: Problem) -> Response:
    return page(request, "problem.html", problem.status, getattr(request.state, "session", None), title=problem.title,
                line=problem.line)


@console.exception_handler(Problem)
async def on_problem(request: Request, exc: Problem) -> Response:
    return _problem_page(request, exc)


@console.exception_handler(StarletteHTTPException)
async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
    titles = {404: "Not found", 405: "Not allowed"}
    response = _problem_page(request, Problem(exc.status_code, titles.get(exc.status_code, "Request refused"),
                                              "There is no such page here." if exc.status_code == 404
                                              else str(exc.detail)))
    response.headers.update(getattr(exc, "headers", None) or {})  # a 405's Allow
    return response


@console.exception_handler(Exception)
async def on_error(request: Request, exc: Exception) -> Response:
    from serving.db import Unavailable

    if isinstance(exc, Unavailable):
        what = {"postgres": "PostgreSQL", "redis": "Redis"}.get(exc.dependency, exc.dependency)
        return _problem_page(request, Problem(503, "A store did not answer",
                                              f"{what} did not answer: try again in a moment (the operator can "
                                              "check the servers with `leadscore infra status`)."))
    ref = secrets.token_hex(4)
    log.exception("console %s failed (ref %s)", request.url.path, ref)
    return _problem_page(request, Problem(500, "Something went wrong",
                                          f"The page could not be made; the service log has the details under "
                                          f"reference {ref}."))


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _blocking(fn, *args):  # noqa: ANN001, ANN002, ANN202
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def current(request: Request) -> Session | None:
    session = await _blocking(_state["sessions"].get, request.cookies.get(COOKIE))
    request.state.session = session
    return session


async def signed_in(request: Request) -> Session:
    session = await current(request)
    if session is None:
        raise _SignIn()
    return session


class _SignIn(Exception):
    """Not signed in (or the session ended): to the sign-in page."""


@console.exception_handler(_SignIn)
async def on_sign_in(_request: Request, _exc: _SignIn) -> Response:
    return RedirectResponse(f"{BASE}/sign-in", status_code=303)


def landing(role: str) -> str:
    """Where a role lands after signing in."""
    return f"{BASE}/privacy" if role == "privacy_officer" else f"{BASE}/leads"


@console.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    session = await current(request)
    return RedirectResponse(landing(session.role) if session else f"{BASE}/sign-in", status_code=303)


@console.get("/sign-in", include_in_schema=False)
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


def _sign_in_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "sign_in.html", status, csrf=token, error=error)
    response.set_cookie(PRE_COOKIE, token, httponly=True, samesite="strict", secure=_cookie_secure(request),
                        path=BASE, max_age=3600)
    return response


@console.post("/sign-in", include_in_schema=False)
async def sign_in(request: Request) -> Response:
    form = await request.form()
    if not same(form.get("csrf_token"), request.cookies.get(PRE_COOKIE)):
        raise Problem(403, "Form refused", "This form did not come from the sign-in page or it expired: open the "
                                           "sign-in page again and sign in from there.")
    who = await _blocking(exchange, _state["service"], str(form.get("access_token") or ""))
    if who is None:
        return _sign_in_page(request, 401, "That token or key is not valid (unknown, revoked, expired or "
                                           "malformed): ask your operator for a new one.")
    sid, session = await _blocking(_state["sessions"].create, *who)
    response = RedirectResponse(landing(session.role), status_code=303)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=_cookie_secure(request), path=BASE,
                        max_age=int(_state["sessions"].ttl_s))
    response.delete_cookie(PRE_COOKIE, path=BASE)
    return response


@console.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    session = await signed_in(request)
    form = await request.form()
    if not same(form.get("csrf_token"), session.csrf):
        raise Problem(403, "Form refused", "This form did not carry its form token: reload the page and try again.")
    await _blocking(_state["sessions"].end, request.cookies.get(COOKIE))
    response = RedirectResponse(f"{BASE}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=BASE)
    return response


def _lead_reader(session: Session) -> None:
    if not session.sees_leads:
        raise Problem(403, "Not for this role", f"Lead pages are for brokers, managers and data scientists; you are "
                                                f"signed in as {session.role.replace('_', ' ')}.")


@console.get("/leads", include_in_schema=False)
async def leads(request: Request, tier: str = "", source: str = "", city: str = "") -> Response:
    session = await signed_in(request)
    _lead_reader(session)
    listing = await views.ranked(_state, session, {"tier": tier, "source": source, "city": city})
    return page(request, "leads.html", session=session, listing=listing)


@console.get("/leads/{lead_id}", include_in_schema=False)
async def lead(request: Request, lead_id: str) -> Response:
    session = await signed_in(request)
    _lead_reader(session)
    if not is_lead_id(lead_id):
        raise Problem(404, "Not found", "There is no such lead here.")
    shown = await views.lead_page(_state, session, lead_id)
    if shown is None:  # another tenant's lead is answered exactly as one that never existed
        raise Problem(404, "Not found", "There is no such lead here.")
    return page(request, "lead.html", session=session, lead=shown)


async def _or_line(what: str, fn, *args):  # noqa: ANN001, ANN002, ANN202
    """(fn(*args), None), or (None, a line saying `what` did not answer) for a source that failed."""
    try:
        return await _blocking(fn, *args), None
    except Exception as exc:  # noqa: BLE001 - one source down: the page says so and shows the rest
        log.warning("console: %s failed: %s", what, exc)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return None, f"{what} did not answer ({first}); the rest of the page is current."


@console.get("/models", include_in_schema=False)
async def models(request: Request) -> Response:
    from serving.console import models_view

    session = await signed_in(request)
    if session.role != "data_scientist":
        raise Problem(403, "Not for this role", "The models page is for data scientists; you are signed in as "
                                                f"{session.role.replace('_', ' ')}.")
    settings = _state["settings"]
    held, held_error = await _or_line("MLflow", models_view.versions, settings)
    monitored, monitor_error = await _or_line("PostgreSQL", models_view.monitor, _state["db"], settings.model_name)
    firing, alerts_error = await _or_line("Prometheus", models_view.alerts, settings.prometheus_url)
    return page(request, "models.html", session=session, models=held, models_error=held_error, monitor=monitored,
                monitor_error=monitor_error, alerts=firing, alerts_error=alerts_error,
                evidently_url=settings.evidently_url, mlflow_url=settings.tracking_uri,
                prometheus_url=settings.prometheus_url)


def _include_routers() -> None:
    from serving.console.privacy_view import router

    console.include_router(router)


_include_routers()
