"""Studio's proof of origin: `X-Twilio-Signature` (twilio's RequestValidator), or Basic auth.

Twilio signs the URL it called (scheme, host, path and query exactly as configured in the
widget) with the account's auth token: for a form body, plus the sorted form fields; for any
other body, the URL carries `bodySHA256`, the hex SHA-256 of the raw body, and the body is
checked against it. Behind a proxy the URL Twilio called is not the one this process sees: it is
rebuilt from X-Forwarded-* headers, and only when the connection trusts that many proxies
(`auth.trusted_proxies`, applied by :class:`TrustedProxies`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from flask import Request
from pydantic import SecretStr
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import Authorization
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


SIGNATURE_HEADER = "X-Twilio-Signature"
FORM = "application/x-www-form-urlencoded"


def public_url(request: Request) -> str:
    """The URL the caller used, as Twilio signed it: the raw request target, not a re-quoted
    one (Werkzeug's `request.url` decodes escapes such as `%2B`, which would break the match)."""
    environ = request.environ
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        query = request.query_string.decode("latin-1")
        target = request.path + (f"?{query}" if query else "")
    elif not target.startswith("/"):  # absolute-form request target
        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{request.scheme}://{request.host}{_forwarded_prefix(environ)}{target}"


def _forwarded_prefix(environ: WSGIEnvironment) -> str:
    """The X-Forwarded-Prefix a trusted proxy added in front of the paths it forwards."""
    original = environ.get("werkzeug.proxy_fix.orig", {}).get("SCRIPT_NAME")
    script_name: str = environ.get("SCRIPT_NAME", "")
    if original is None or not script_name.startswith(original):
        return ""
    return script_name[len(original) :].rstrip("/")


def signature_valid(request: Request, auth_token: SecretStr) -> bool:
    """Whether the request carries a valid X-Twilio-Signature for its URL and body."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    url = public_url(request)
    validator = RequestValidator(auth_token.get_secret_value())
    params: Any
    if request.mimetype == FORM:
        params = request.form
    else:
        body = request.get_data(cache=True)
        if body and "bodySHA256" not in parse_qs(urlsplit(url).query):
            return False  # a body the signature does not cover
        try:
            # The raw body, never `{}`: with a dict the validator skips the body hash.
            params = body.decode("utf-8") if body else {}
        except UnicodeDecodeError:
            return False
    return bool(validator.validate(url, params, signature))


def basic_auth_valid(credentials: Authorization, expected: tuple[str, SecretStr]) -> bool:
    """Whether Basic credentials are the expected user and password."""
    user, password = expected
    # Both compared, in constant time, whatever the first comparison says.
    checks = (
        hmac.compare_digest((credentials.username or "").encode(), user.encode()),
        hmac.compare_digest(
            (credentials.password or "").encode(), password.get_secret_value().encode()
        ),
    )
    return all(checks)


class TrustedProxies:
    """WSGI middleware applying ProxyFix for as many proxies as the connection file trusts.

    `trusted` reads the count from the request's connection, so an edit of
    `auth.trusted_proxies` applies without a restart; with 0, X-Forwarded-* headers are ignored
    (anyone can send them).
    """

    def __init__(self, app: WSGIApplication, trusted: Callable[[WSGIEnvironment], int]) -> None:
        self._app = app
        self._trusted = trusted
        self._fixers: dict[int, WSGIApplication] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        trusted = self._trusted(environ)
        if trusted == 0:
            return self._app(environ, start_response)
        fixer = self._fixers.get(trusted)
        if fixer is None:
            fixer = self._fixers[trusted] = ProxyFix(
                self._app,
                x_for=trusted,
                x_proto=trusted,
                x_host=trusted,
                x_port=trusted,
                x_prefix=trusted,
            )
        return fixer(environ, start_response)
