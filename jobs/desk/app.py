"""The desk's web application (FastAPI, pages rendered on the server with Jinja2: no JavaScript to build,
and both already come with MLflow's server). Every page but /healthz needs a login; every form carries its
session's token; a decision goes through `AlertBook.decide`. What waits (a Spark job, the broker, the
stream's endpoint) runs in FastAPI's thread pool, never in its event loop.

    GET  /                            the queue: open terminal cases, then open alerts (?order=newest|riskiest)
    GET  /alerts/{transaction_id}     one alert: why it was flagged, in words, and its decision
    POST /alerts/{transaction_id}     decide it: decision=fraud|genuine
    POST /cases/{terminal_id}         decide every open payment of a terminal's case
    GET  /requirement                 recall and FPR by day against the bank's 98% and 5%
    GET  /stream                      the stream's health, from its Prometheus endpoint
    GET  /healthz                     the desk's own liveness, JSON, no login
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from features.definitions import FEATURES
from jobs.core.errors import FraudError
from jobs.core.waiting import wait_until
from jobs.desk.access import Access
from jobs.desk.book import AlertBook, UnknownAlert
from jobs.desk.health import stream_health
from jobs.desk.requirement import RequirementPage
from models.metrics import MAX_FPR, REQUIRED_RECALL

ChartSource = Callable[[], tuple[list[str], str]]  # the charts' SVG, and where their figures come from

COOKIE = "fraud_desk"
DECISIONS = {"fraud": 1, "genuine": 0}
TEMPLATES = Path(__file__).parent / "templates"
DESCRIPTIONS = {f.name: f.description for f in FEATURES}
log = logging.getLogger("fraud.desk")


def in_words(item: str) -> str:
    """A SHAP top feature of an alert ("terminal_risk_7d=0.5 (+1.234)") as a sentence for the fraud team."""
    name, _, rest = item.partition("=")
    value, _, contribution = rest.partition(" (")
    described = DESCRIPTIONS.get(name)
    if described is None:
        return item
    push = contribution.rstrip(")")
    return f"{described}: {value}" + (f" (raised the score by {push.lstrip('+')} in log-odds)" if push else "")


class DeskError(FraudError):
    """A request the desk refuses, with its HTTP status; nothing was changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Desk:
    """The pages and forms over a started `book`; `requirement` computes the figures, `metrics_url` is the
    stream's endpoint."""

    def __init__(
        self,
        book: AlertBook,
        access: Access,
        requirement: RequirementPage,
        metrics_url: str,
        queue_limit: int = 200,
        charts: ChartSource | None = None,
    ) -> None:
        import jinja2

        self.book, self.access, self.requirement = book, access, requirement
        self.metrics_url, self.queue_limit = metrics_url, queue_limit
        self.charts = charts
        self.pages = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
        self.pages.filters["words"] = in_words
        self.pages.filters["when"] = lambda text: (
            str(text or "").replace("T", " ").removesuffix(".000Z").removesuffix("Z")
        )

    # --- helpers ---------------------------------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        cookie = request.cookies.get(COOKIE)
        user = self.access.user(cookie)
        token = self.access.form_token(cookie) if user and cookie else ""
        html = self.pages.get_template(name).render(
            user=user,
            token=token,
            recall_line=REQUIRED_RECALL,
            fpr_line=MAX_FPR,
            book_error=self.book.error,
            caught_up=self.book.caught_up.is_set(),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def user_of(self, request: Request) -> str:
        user = self.access.user(request.cookies.get(COOKIE))
        if user is None:
            raise DeskError(401, "not logged in: log in first (your login may have expired)")
        return user

    async def checked_form(self, request: Request) -> tuple[str, dict[str, str]]:
        """The user and the fields of a POSTed form whose token is the session's; DeskError otherwise."""
        user = self.user_of(request)
        fields = await form_fields(request)
        if not self.access.form_ok(request.cookies.get(COOKIE), fields.get("token")):
            raise DeskError(
                403,
                "the form's token is missing or not this session's: nothing was changed (a form "
                "sent from another page, or a login that has changed since?)",
            )
        return user, fields

    # --- errors ----------------------------------------------------------------------------------------------
    async def refused(self, request: Request, error: Exception) -> Response:
        status = error.status if isinstance(error, DeskError) else 404 if isinstance(error, UnknownAlert) else 503
        if status == 401 and request.method == "GET":
            return RedirectResponse("/login?next=" + urllib.parse.quote(request.url.path), status_code=303)
        log.warning("desk: refused %s %s: %s", request.method, request.url.path, error)
        message = f"{error}; nothing was changed" if isinstance(error, UnknownAlert) else str(error)
        return self.render(request, "error.html", status=status, message=message)

    # --- the login -------------------------------------------------------------------------------------------
    def login_page(self, request: Request, next: str = "/", failed: int = 0) -> Response:
        return self.render(request, "login.html", next=next if next.startswith("/") else "/", failed=failed)

    async def login(self, request: Request) -> Response:
        fields = await form_fields(request)
        target = fields.get("next", "/")
        target = target if target.startswith("/") and not target.startswith("//") else "/"
        cookie = self.access.login(fields.get("user", ""), fields.get("secret", ""))
        if cookie is None:
            log.warning("desk: a failed login for %r", fields.get("user", "")[:40])
            return RedirectResponse(f"/login?failed=1&next={urllib.parse.quote(target)}", status_code=303)
        log.info("desk: %s logged in", fields["user"])
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", max_age=int(self.access.session_seconds))
        return response

    async def logout(self, request: Request) -> Response:
        await self.checked_form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # --- the queue and the decisions -------------------------------------------------------------------------
    def queue(self, request: Request, order: str = "newest", done: str = "") -> Response:
        self.user_of(request)
        if order not in ("newest", "riskiest"):
            raise DeskError(400, f"order: expected 'newest' or 'riskiest', found {order[:40]!r}")
        alerts = self.book.open_alerts(order)
        return self.render(
            request,
            "queue.html",
            alerts=alerts[: self.queue_limit],
            total=len(alerts),
            order=order,
            cases=self.book.open_cases(),
            done=done,
            hours=self.book.hours,
        )

    def alert_page(self, request: Request, transaction_id: str, already: int = 0) -> Response:
        self.user_of(request)
        alert, decision = self.book.alert(whole_number(transaction_id, "transaction"))
        return self.render(request, "alert.html", alert=alert, decision=decision, already=already)

    async def decide(self, request: Request, transaction_id: str) -> Response:
        user, fields = await self.checked_form(request)
        tx = whole_number(transaction_id, "transaction")
        _, sent = await run_in_threadpool(self.book.decide, tx, decision_of(fields), user)
        if not sent:  # decided before: shown as it stands, nothing sent again
            return RedirectResponse(f"/alerts/{tx}?already=1", status_code=303)
        return RedirectResponse(f"/?done={tx}", status_code=303)

    async def decide_case(self, request: Request, terminal_id: str) -> Response:
        user, fields = await self.checked_form(request)
        labelled = await run_in_threadpool(
            self.book.decide_case, whole_number(terminal_id, "terminal"), decision_of(fields), user
        )
        return RedirectResponse(f"/?done={','.join(map(str, labelled))}", status_code=303)

    # --- the requirement and the stream ----------------------------------------------------------------------
    def requirement_page(self, request: Request) -> Response:
        self.user_of(request)
        return self.render(
            request,
            "requirement.html",
            **self.requirement.figures(),
            health=stream_health(self.metrics_url),
            settle_days=self.requirement.cfg.get("desk.settle_days"),
        )

    def stream_page(self, request: Request) -> Response:
        self.user_of(request)
        charts, source = self.charts() if self.charts is not None else ([], "")
        return self.render(
            request, "stream.html", health=stream_health(self.metrics_url), charts=charts, chart_source=source
        )

    async def healthz(self) -> JSONResponse:
        return JSONResponse(
            {"ok": self.book.thread.is_alive(), "topics_read": self.book.caught_up.is_set(), "error": self.book.error}
        )


async def form_fields(request: Request) -> dict[str, str]:
    """A POSTed form's fields (application/x-www-form-urlencoded), the last value of each."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}


def whole_number(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise DeskError(404, f"{what} {text[:40]!r}: expected a whole number")
    return int(text)


def decision_of(fields: dict[str, str]) -> int:
    given = fields.get("decision", "")
    if given not in DECISIONS:
        raise DeskError(400, f"decision: expected 'fraud' or 'genuine', found {given[:40]!r}; nothing was changed")
    return DECISIONS[given]


def make_app(
    book: AlertBook,
    access: Access,
    requirement: RequirementPage,
    metrics_url: str,
    queue_limit: int = 200,
    charts: ChartSource | None = None,
) -> FastAPI:
    """The desk's FastAPI application (the routes of the module's docstring); `charts` gives the stream page's
    charts (jobs/desk/charts.py) and says where they come from."""
    desk = Desk(book, access, requirement, metrics_url, queue_limit, charts)
    app = FastAPI(title="fraud desk", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(FraudError, desk.refused)  # DeskError and UnknownAlert are FraudErrors
    for path, endpoint, methods in (
        ("/login", desk.login_page, ["GET"]),
        ("/login", desk.login, ["POST"]),
        ("/logout", desk.logout, ["POST"]),
        ("/", desk.queue, ["GET"]),
        ("/alerts/{transaction_id}", desk.alert_page, ["GET"]),
        ("/alerts/{transaction_id}", desk.decide, ["POST"]),
        ("/cases/{terminal_id}", desk.decide_case, ["POST"]),
        ("/requirement", desk.requirement_page, ["GET"]),
        ("/stream", desk.stream_page, ["GET"]),
        ("/healthz", desk.healthz, ["GET"]),
    ):
        app.add_api_route(path, endpoint, methods=methods)
    return app


def serve(app: FastAPI, host: str, port: int, in_thread: bool = False) -> Callable[[], None]:
    """Serve the desk with uvicorn; in a thread of its own (return a function that stops it), or here until
    interrupted."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    if not in_thread:
        server.run()
        return lambda: None
    thread = threading.Thread(target=server.run, name="desk-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), f"the desk to listen on {host}:{port}", 30, 0.1)
    if not server.started:
        raise FraudError(f"desk.port: could not serve on {host}:{port} (is the port taken?)")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop
