"""The sandbox's WSGI app: Segment's Profile and tracking APIs, Twilio's token check, control."""

from __future__ import annotations

import random
import time
import uuid

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from connector.errors import error_response
from connector.sandbox.control import control
from connector.sandbox.core import Sandbox
from connector.sandbox.profile_api import profile_api
from connector.sandbox.tracking_api import tracking_api
from connector.sandbox.twilio_iam import twilio_iam
from connector.sandbox.wsgi import SegmentError

# Which fault target each blueprint belongs to; the control plane is never faulted.
FAULT_TARGETS = {"profile": "profile", "tracking": "tracking", "twilio": "twilio"}


def create_sandbox_app(sandbox: Sandbox) -> Flask:
    app = Flask(__name__)
    app.extensions["sandbox"] = sandbox
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in (profile_api, tracking_api, twilio_iam, control):
        app.register_blueprint(blueprint)
    app.before_request(_inject_faults)
    app.after_request(_add_request_id)
    app.register_error_handler(SegmentError, _segment_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _inject_faults() -> Response | None:
    target = FAULT_TARGETS.get(request.blueprint or "")
    sandbox: Sandbox = current_app.extensions["sandbox"]
    faults = sandbox.faults.current
    if target is None or target not in faults.targets:
        return None
    if faults.path_contains is not None and faults.path_contains not in request.path:
        return None
    if faults.outage == "hang":
        sandbox.faults.wait_out_hang(faults)
        raise SegmentError(503, "server_error", "The service is unavailable.")
    if faults.outage == "refuse":  # a connection opened before the outage: close it
        response = error_response(503, "server_error", "The service is unavailable.")
        response.headers["Connection"] = "close"
        return response
    delay = sandbox.faults.delay(faults)
    if delay:
        time.sleep(delay)
    if faults.storm_rate and random.random() < faults.storm_rate:
        raise SegmentError(
            429,
            "rate_limit_error",
            "Too many requests hit the API too quickly.",
            {"Retry-After": f"{faults.retry_after:g}"},
        )
    if faults.error_rate and random.random() < faults.error_rate:
        raise SegmentError(faults.error_status, "server_error", "Something went wrong.")
    return None


def _add_request_id(response: Response) -> Response:
    response.headers.setdefault("Request-Id", str(uuid.uuid4()))
    return response


def _segment_error(error: SegmentError) -> Response:
    response = error_response(error.status, error.code, error.message)
    response.headers.update(error.headers)
    return response


def _http_error(error: HTTPException) -> Response:
    code = {404: "not_found", 405: "invalid_request_error"}.get(
        error.code or 0, "invalid_request_error"
    )
    return error_response(error.code or 400, code, error.description or "Bad request.")


def _unexpected_error(error: Exception) -> Response:
    current_app.logger.exception("sandbox error")
    return error_response(500, "server_error", "Something went wrong on the sandbox's side.")
