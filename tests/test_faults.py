"""Fault injection: latency, errors, 429 storms with Retry-After, outages that refuse or hang."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import RunningSandbox, SandboxFactory


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox([{"type": "identify", "userId": "u1", "traits": {"name": "F"}}])


def lookup(sandbox: RunningSandbox) -> httpx.Response:
    return sandbox.profile("user_id:u1", "traits")


def eventually_ok(sandbox: RunningSandbox, within: float = 5.0) -> bool:
    """Whether lookups succeed again within `within` seconds (faults expire on a timer)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if lookup(sandbox).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def test_latency_with_jitter(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(latency_ms=300, jitter_ms=100)
    timings = []
    for _ in range(4):
        started = time.perf_counter()
        assert lookup(sandbox).status_code == 200
        timings.append(time.perf_counter() - started)
    assert min(timings) >= 0.3
    assert len({round(t, 3) for t in timings}) > 1  # jitter varies the delay
    sandbox.control.clear_faults()
    started = time.perf_counter()
    lookup(sandbox)
    assert time.perf_counter() - started < 0.3


def test_error_rate(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(error_rate=1.0, error_status=502)
    response = lookup(sandbox)
    assert response.status_code == 502 and response.json()["error"]["code"] == "server_error"
    sandbox.control.set_faults(error_rate=0.5)
    statuses = {lookup(sandbox).status_code for _ in range(60)}
    assert statuses == {200, 503}


def test_429_storm_with_retry_after_expires_by_itself(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(storm_rate=1.0, retry_after=2, seconds=0.5)
    response = lookup(sandbox)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "rate_limit_error"
    assert eventually_ok(sandbox)


def test_tracking_api_is_faulted_too(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(error_rate=1.0)
    response = sandbox.http.post("/v1/track", json={"userId": "u1", "event": "E"})
    assert response.status_code == 503


def test_control_plane_is_never_faulted(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(error_rate=1.0, latency_ms=500)
    started = time.perf_counter()
    assert sandbox.control.stats()["profile_api"]["requests"] == 0
    assert time.perf_counter() - started < 0.5


def test_refuse_outage_refuses_connections_then_recovers(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(outage="refuse", seconds=0.6)
    with pytest.raises(httpx.ConnectError):
        httpx.get(sandbox.url + "/_sandbox", timeout=2)
    assert eventually_ok(sandbox)


def test_refuse_outage_also_fails_already_open_connections(sandbox: RunningSandbox) -> None:
    assert lookup(sandbox).status_code == 200  # opens a keep-alive connection
    sandbox.sandbox.faults.set(sandbox.sandbox.faults.current.__class__(outage="refuse"))
    try:
        with pytest.raises(httpx.TransportError):
            for _ in range(2):  # the pooled connection gets a 503 + close, the next is refused
                assert lookup(sandbox).status_code == 503
    finally:
        sandbox.sandbox.faults.clear()
    assert lookup(sandbox).status_code == 200


def test_hang_outage_answers_nothing_until_it_ends(sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(outage="hang")
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.get("/v1/spaces/x/collections/users/profiles/user_id:u1/traits", timeout=0.3)
    sandbox.control.clear_faults()
    assert lookup(sandbox).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"latency_ms": -1},
        {"error_rate": 2},
        {"outage": "maybe"},
        {"targets": ["nowhere"]},
        {"surprise": 1},
        {"error_status": 404},
        {"latency_ms": "slow"},
    ],
)
def test_impossible_fault_settings_are_400(
    sandbox: RunningSandbox, body: dict[str, object]
) -> None:
    response = sandbox.http.put("/_sandbox/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
