"""Hostile input against the connector: schemathesis from /openapi.json, hypothesis, and drills.

Every generated request is authenticated as an agent (credentials are the auth tests' subject),
and none may get a 5xx: bad input is a 4xx in Segment's error shape. The number of generated
cases is printed at the end of the run (see `pytest_terminal_summary` in conftest).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from connector.web.openapi import openapi_document
from tests.conftest import CASES, RunningConnector, RunningSandbox, start_connector

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
ADA = "+14155550123"
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def api(
    demo: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningConnector]:
    """One connector for every generated case, write-back on, limits out of the way."""
    extra = (
        "\n[auth]\nagent_lookups_per_minute = 1000000\nfailed_auth_per_minute = 1000000\n"
        f'\n[writeback]\nenabled = true\ntracking_api_url = "{demo.url}"\n'
    )
    # The space's pace out of the way too: the cases are about input, not about Segment's rate.
    running = start_connector(
        demo, tmp_path_factory.mktemp("fuzz") / "connection.toml", extra, rate_limit=100000
    )
    yield running
    running.close()


@pytest.fixture(scope="module")
def anonymous(api: RunningConnector) -> Iterator[httpx.Client]:
    """One client without credentials for every case: a new one each time would load the CA
    store each time (45 ms: two thirds of the run when it did)."""
    with httpx.Client(base_url=api.url, timeout=15) as client:
        yield client


def agent(api: RunningConnector) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.agent_token}"}


def content_type(response: httpx.Response | Any) -> str:
    """httpx's headers, or schemathesis' (a dict of lists)."""
    headers = {str(name).lower(): value for name, value in dict(response.headers).items()}
    value = headers.get("content-type", "")
    return str(value[0] if isinstance(value, list) else value)


def clean_refusal(response: httpx.Response | Any) -> None:
    """No 5xx but a 503 from Segment; a 4xx in Segment's error shape (a page for the iframe)."""
    assert response.status_code < 500 or response.status_code == 503, response.text
    if 400 <= response.status_code < 500 and "json" in content_type(response):
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


@SCHEMA.parametrize()
@settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
def test_schemathesis(
    case: schemathesis.Case[Any], api: RunningConnector, anonymous: httpx.Client
) -> None:
    CASES["schemathesis"] += 1
    # Conformance of status codes, content types and bodies to the document, schema-invalid
    # input refused, no 5xx; and the same request without credentials refused. Left out: that
    # every schema-valid request succeeds, since "exactly one of from, phone, email or
    # identifier, naming a real address" is more than OpenAPI can say about query parameters.
    response = case.call_and_validate(
        base_url=api.url,
        headers=agent(api),
        excluded_checks=[ignored_auth, positive_data_acceptance],
    )
    clean_refusal(response)
    documented = case.method.upper() == case.operation.method.upper()  # not a probe of TRACE...
    if documented and needs_credentials(case.path, case.method):
        unauthenticated = anonymous.request(case.method, case.formatted_path, params=case.query)
        assert unauthenticated.status_code == 401


def needs_credentials(path: str, method: str) -> bool:
    """Every operation but those the document marks public (`security: []`) or open to
    requests without credentials (`{}` among its requirements: /readyz for probes)."""
    operation: dict[str, Any] = openapi_document()["paths"].get(path, {}).get(method.lower(), {})
    security = operation.get("security")
    return security != [] and {} not in (security or [])


# --- hypothesis: anything in the inputs ----------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(
        [
            ADA,
            f"whatsapp:{ADA}",
            "user_id:../../../v1/spaces/spa_test/collections/users/profiles/user_id:u-ada/traits",
            "user_id:..%2F..%2Fx",
            "user_id:%2e%2e/%2e%2e",
            "email:ada@example.com\r\nX-Injected: 1",
            "+1415\x00555",
            "x" * 5000,
            "user_id:" + "\u202e" * 10,
        ]
    ),
)
FIELDS = st.sampled_from(["from", "From", "phone", "email", "identifier", "Token", "other"])


@SETTINGS
@given(params=st.dictionaries(FIELDS, TEXT, max_size=3))
def test_any_query_gets_a_card_or_a_clean_400(
    api: RunningConnector, params: dict[str, str]
) -> None:
    CASES["hypothesis"] += 1
    response = api.http.get("/v1/cards", params=params)
    clean_refusal(response)
    if response.status_code == 200:
        assert response.json()["found"] in (True, False)


NUMBER = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(
    path=st.sampled_from(["/v1/cards", "/v1/studio/lookup", "/v1/events"]),
    body=st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=4)),
)
def test_any_json_body_gets_an_answer_or_a_clean_4xx(
    api: RunningConnector, path: str, body: Any
) -> None:
    CASES["hypothesis"] += 1
    clean_refusal(api.http.post(path, json=body))


@SETTINGS
@given(
    path=st.sampled_from(["/v1/cards", "/v1/studio/lookup", "/v1/events"]),
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/xml",
            "",
        ]
    ),
)
def test_any_bytes_in_any_content_type_get_a_clean_answer(
    api: RunningConnector, path: str, raw: bytes, content_type: str
) -> None:
    CASES["hypothesis"] += 1
    headers = {"Content-Type": content_type} if content_type else {}
    clean_refusal(api.http.post(path, content=raw, headers=headers))


# --- drills --------------------------------------------------------------------------------------


def error(response: httpx.Response) -> str:
    body: dict[str, dict[str, str]] = response.json()
    return body["error"]["message"]


def test_body_size_limit(api: RunningConnector) -> None:
    big = {"from": ADA, "padding": "x" * 70_000}
    for path in ("/v1/cards", "/v1/studio/lookup", "/v1/events"):
        response = api.http.post(path, json=big)
        assert response.status_code == 413 and "64 KB" in error(response)
    # Without credentials too: the size is refused before anything is read into memory.
    assert httpx.post(f"{api.url}/v1/cards", json=big).status_code in (401, 413)


@pytest.mark.parametrize(
    "value",
    [
        "x" * 300,
        "+1415555\x000123",
        "ada@example.com\r\nX-Injected: yes",
        "user_id:a\tb",
        "user_id:" + "y" * 300,
    ],
)
def test_long_and_control_character_identifiers_are_400s(api: RunningConnector, value: str) -> None:
    for field in ("from", "email", "identifier"):
        response = api.http.get("/v1/cards", params={field: value})
        assert response.status_code == 400, (field, value, response.text)
        assert value not in response.text and "X-Injected" not in response.headers


@pytest.mark.parametrize(
    "identifier",
    [
        "user_id:../../u-ada/traits",
        "user_id:..%2F..%2Fu-ada",
        "user_id:%2e%2e%2fu-ada",
        "user_id:u-ada/../u-bob",
        "user_id:u-ada?include=x",
        "user_id:u-ada#x",
        "user_id:u-ada%00",
    ],
)
def test_path_tricks_in_identifiers_stay_one_identifier(
    api: RunningConnector, demo: RunningSandbox, identifier: str
) -> None:
    response = api.http.get("/v1/cards", params={"identifier": identifier})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json()["found"] is False  # no other profile is reached by a path trick


def test_deeply_nested_json_is_a_400(api: RunningConnector) -> None:
    for depth in (40, 5_000):
        nested = "[" * depth + "]" * depth
        body = '{"from": "+14155550123", "properties": {"a": ' + nested + "}}"
        for path in ("/v1/cards", "/v1/events"):
            response = api.http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (path, depth, response.text)
    deep_form = {".".join(["properties"] + ["a"] * 40): "1", "from": ADA, "event": "Deep"}
    assert api.http.post("/v1/events", data=deep_form).status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "image/png"])
def test_bodies_neither_form_nor_json_are_415s(api: RunningConnector, content_type: str) -> None:
    for path in ("/v1/cards", "/v1/studio/lookup", "/v1/events"):
        response = api.http.post(
            path, content=f"from={ADA}", headers={"Content-Type": content_type}
        )
        assert response.status_code == 415, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_request_error"


def test_header_injection_through_a_raw_request_goes_nowhere(api: RunningConnector) -> None:
    """Headers and values a client cannot send through httpx: a raw socket."""
    host, port = api.url.removeprefix("http://").split(":")
    token = agent(api)["Authorization"]
    request = (
        f"GET /v1/cards?from=%2B14155550123%0D%0AX-Injected:%20yes HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: {token}\r\n"
        f"Origin: https://flex.twilio.com%0D%0AX-Evil: 1\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(request.encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 400")
    assert "X-Injected" not in head and "X-Evil" not in head
    assert "Access-Control-Allow-Origin" not in head
