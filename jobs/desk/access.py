"""The desk's login: a user name and the shared secret of `desk.login_variable` (an environment variable,
never a file). A login gets a session cookie signed with a key derived from the secret (HMAC-SHA256), and each
form a token of that session: a form forged elsewhere, without it, changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time

from jobs.core.config import Config
from jobs.core.errors import ConfigError

USER = re.compile(r"[A-Za-z0-9._@-]{1,40}")
MIN_SECRET = 8


def secret_from_environment(cfg: Config) -> str:
    """The shared secret, from the variable `desk.login_variable` names; a clear error without one."""
    variable = str(cfg.get("desk.login_variable"))
    secret = os.environ.get(variable, "")
    if len(secret) < MIN_SECRET:
        found = "nothing" if not secret else f"{len(secret)} characters"
        raise ConfigError(
            f"desk.login_variable: the environment variable {variable} must hold the desk's shared "
            f"secret (at least {MIN_SECRET} characters; found {found}); the desk's login needs it, "
            f"and a secret is never read from a file"
        )
    return secret


class Access:
    """Checks logins, signs and reads session cookies, makes and checks the forms' tokens."""

    def __init__(self, secret: str, session_hours: float = 12) -> None:
        self.secret = secret.encode()
        self.key = hashlib.sha256(b"fraud-desk session key:" + self.secret).digest()
        self.session_seconds = session_hours * 3600

    def login(self, user: str, secret: str) -> str | None:
        """A session cookie's value for a valid user name and the right secret, else None."""
        if not USER.fullmatch(user) or not hmac.compare_digest(secret.encode(), self.secret):
            return None
        body = f"{user}|{int(time.time() + self.session_seconds)}"
        return base64.urlsafe_b64encode(f"{body}|{self._sign(body)}".encode()).decode()

    def user(self, cookie: str | None) -> str | None:
        """The user of a valid, unexpired session cookie, else None."""
        try:
            user, expires, signature = base64.urlsafe_b64decode((cookie or "").encode()).decode().split("|")
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{user}|{expires}")) or int(expires) < time.time():
            return None
        return user

    def form_token(self, cookie: str) -> str:
        """The token the session's forms carry."""
        return self._sign("form|" + cookie)

    def form_ok(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie) and bool(token) and hmac.compare_digest(str(token), self.form_token(str(cookie)))

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
