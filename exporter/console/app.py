"""The console: who is signed in, may they see this account, and which page answers.

Every page under /console/accounts/{account} is authorized against the members table first; an
account the user is not a member of gets exactly the page an account that does not exist gets.
Every POST carries the session's CSRF token. Pages are server-rendered (templates/), with a little
plain JavaScript (static/console.js) that only improves them.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError

from .. import access
from ..context import Context
from ..errors import ExporterError, TransientError
from ..history import acting_as
from ..logs import redact
from ..members import MemberRepo, check_user
from . import delivery, pages, wizard
from .web import (
    Request,
    Response,
    Session,
    Signer,
    expired_cookie,
    html,
    new_session,
    redirect,
    session_cookie,
    static,
)

log = logging.getLogger(__name__)
LOGIN = "/.auth/login/aad?post_login_redirect_uri=/console"
LOGOUT = "/.auth/logout?post_logout_redirect_uri=/console"


@dataclass
class Visit:
    """One request with who makes it: what every page handler gets."""

    console: Console
    request: Request
    session: Session
    user: str
    account: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> Context:
        return self.console.ctx

    @property
    def csrf(self) -> str:
        return self.console.signer.csrf_token(self.session, self.user)

    def page(self, status: int, template: str, **values: object) -> Response:
        """A page with what every page shows: the user, sign-out, the CSRF token of its forms."""
        return html(
            status,
            template,
            user=self.user,
            account=self.account,
            csrf=self.csrf,
            development=self.console.development,
            logout=LOGOUT,
            **values,
        )


Handler = Callable[[Visit], Response]
ACCOUNT = r"/console/accounts/(?P<account>[^/]+)"
INTEGRATION = ACCOUNT + r"/integrations/(?P<id>[0-9a-f]{12})"
DRAFT_STEP = ACCOUNT + r"/wizard/(?P<draft>[0-9a-f]{32})/(?P<step>[a-z]+)"
ROUTES: list[tuple[str, re.Pattern, Handler]] = [
    ("GET", re.compile(r"/console/?"), pages.home),
    ("GET", re.compile(ACCOUNT + r"/?"), pages.integrations),
    ("GET", re.compile(ACCOUNT + r"/new"), wizard.choose_type),
    ("POST", re.compile(ACCOUNT + r"/new"), wizard.start),
    ("POST", re.compile(INTEGRATION + r"/edit"), wizard.start_edit),
    ("POST", re.compile(INTEGRATION + r"/(?P<action>pause|resume)"), pages.pause_resume),
    ("GET", re.compile(INTEGRATION + r"/delete"), pages.confirm_delete),
    ("POST", re.compile(INTEGRATION + r"/delete"), pages.delete),
    ("POST", re.compile(INTEGRATION + r"/replay"), pages.replay),
    ("POST", re.compile(INTEGRATION + r"/audit"), delivery.check_delivery),
    ("POST", re.compile(INTEGRATION + r"/notify-secret"), delivery.new_signing_secret),
    ("GET", re.compile(DRAFT_STEP), wizard.show),
    ("POST", re.compile(DRAFT_STEP), wizard.submit),
]


class Console:
    """The console on one context. `development=True` is the development sign-in (only `serve` sets it);
    otherwise the user comes from App Service Authentication's headers, believed only where it is on."""

    def __init__(
        self,
        ctx: Context,
        development: bool = False,
        auth_enabled: Callable[[], bool] = access.app_service_auth_enabled,
    ):
        self.ctx = ctx
        self.development = development
        self.auth_enabled = auth_enabled
        self.signer = Signer(ctx.settings.secret_key)
        self.members = MemberRepo(ctx.storage, ctx.clock)

    def handle(self, request: Request) -> Response:
        """Answer one request under /console; failures are a page, their text only in the (redacted) logs."""
        try:
            return self._handle(request)
        except ExporterError as error:
            log.warning("console request refused: %s", error.message)
            return html(503 if isinstance(error, TransientError) else 500, "error.html", message=error.message)
        except AzureError as error:
            log.warning("console storage failure (%s)", type(error).__name__)
            return html(503, "error.html", message="The service's storage is unavailable. Try again in a minute.")
        except Exception as error:  # noqa: BLE001 - the last line of defence; never echo the text
            log.error("console failure (%s): %s", type(error).__name__, redact(traceback.format_exc()))
            return html(500, "error.html", message="Something went wrong on our side. Try again later.")

    def _handle(self, request: Request) -> Response:
        if request.path.startswith("/console/static/") and request.method in ("GET", "HEAD"):
            found = static(request.path.removeprefix("/console/static/"))
            return found or html(404, "error.html", message="No such page.")
        session = self.signer.load(request.cookie("console_session"))
        fresh = session is None
        session = session or new_session()
        response = self._route(request, session)
        if fresh and not any(c.startswith("console_session=") for c in response.cookies):
            response.cookies.append(session_cookie(self.signer, session, request.https))
        return response

    def _route(self, request: Request, session: Session) -> Response:
        if not self.development and not self.auth_enabled():
            return html(
                503,
                "error.html",
                message="Sign-in is not set up: App Service Authentication is not enabled for this app "
                "(locally, start `python -m exporter serve --dev-sign-in`).",
            )
        if request.path.rstrip("/") == "/console/sign-in":
            return (
                self._sign_in(request, session)
                if self.development
                else html(404, "error.html", message="No such page.")
            )
        user = session.user if self.development else access.principal_user(request.headers)
        if not user:
            return redirect("/console/sign-in" if self.development else LOGIN)
        if request.method == "POST" and not self.signer.csrf_ok(session, user, _field(request.form(), "csrf_token")):
            return html(403, "error.html", message="This form has expired. Go back, reload the page and try again.")
        if request.path.rstrip("/") == "/console/sign-out" and request.method == "POST":
            return self._sign_out(request)
        for method, pattern, handler in ROUTES:
            found = pattern.fullmatch(request.path)
            if found is None or method != ("GET" if request.method == "HEAD" else request.method):
                continue
            visit = Visit(self, request, session, user, params=found.groupdict())
            account = visit.params.get("account")
            if account is not None:
                if not self.members.is_member(account, user):
                    return visit.page(404, "not_found.html", missing=account)
                visit.account = account
            with acting_as(user):  # the history names who made each change
                return handler(visit)
        return Visit(self, request, session, user).page(404, "error.html", message="No such page.")

    def _sign_in(self, request: Request, session: Session) -> Response:
        """The development sign-in: a user name, no password. `serve --dev-sign-in` only; never in Azure."""
        csrf = self.signer.csrf_token(session, "")
        if request.method != "POST":
            return html(200, "sign_in.html", csrf=csrf, error="", name="")
        form = request.form()
        if not self.signer.csrf_ok(session, "", _field(form, "csrf_token")):
            return html(403, "sign_in.html", csrf=csrf, error="This form has expired; try again.", name="")
        try:
            user = check_user(_field(form, "user"), "User name")
        except ExporterError as error:
            return html(400, "sign_in.html", csrf=csrf, error=f"User name: {error.message}", name=_field(form, "user"))
        response = redirect("/console")
        # A new session id at sign-in: a session id known before it is worth nothing after.
        response.cookies.append(session_cookie(self.signer, new_session(user), request.https))
        return response

    def _sign_out(self, request: Request) -> Response:
        if not self.development:
            return redirect(LOGOUT)
        response = redirect("/console/sign-in")
        response.cookies.append(expired_cookie(request.https))
        return response


def _field(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]
