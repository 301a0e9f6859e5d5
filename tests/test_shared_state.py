"""Several instances, each with several workers, sharing one Redis (REDIS_URL): a card fetched
by one is read by all, and a crowd asking for one caller makes one fetch for the deployment."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from connector.serving.processes import ServedProcess, served_process
from connector.state.pacing import Pace
from connector.tls import tls_context
from tests.conftest import (
    REDIS_URL,
    RunningSandbox,
    SandboxFactory,
    connection_toml,
    connector_env,
)
from tests.test_writeback import ENGAGEMENT

# A database of its own: the tests empty it.
UNLIMITED = "\n[auth]\nagent_lookups_per_minute = 100000\n"
CALLERS = [f"+1415555{n:04d}" for n in range(100, 120)]  # the demo's and unknown numbers


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    redis.Redis.from_url(REDIS_URL).flushdb()
    return make_sandbox(data="demo")


@contextmanager
def instances(
    sandbox: RunningSandbox,
    tmp_path: Path,
    count: int,
    redis_url: str = REDIS_URL,
    auth: str = UNLIMITED,
) -> Iterator[list[ServedProcess]]:
    """`count` instances of `connector serve`, 2 workers each, in front of one sandbox."""
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(sandbox.url, auth), encoding="utf-8")
    env = {**connector_env(sandbox.url), "REDIS_URL": redis_url}
    with ExitStack() as stack:
        yield [
            stack.enter_context(served_process(config, env, workers=2, threads=64))
            for _ in range(count)
        ]


@pytest.fixture
def agent(sandbox: RunningSandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.control.issue_agent_token()['token']}"}


def upstream_requests(sandbox: RunningSandbox) -> int:
    return int(sandbox.control.stats()["profile_api"]["requests"])


def test_a_crowd_on_two_instances_makes_one_fetch_per_section(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    sandbox.control.set_faults(latency_ms=50)  # so that the 200 overlap
    with instances(sandbox, tmp_path, 2) as served:
        urls = [s.url for s in served]
        barrier = threading.Barrier(200)
        names: list[str] = []

        def look_up(n: int) -> None:
            with httpx.Client(
                base_url=urls[n % 2], timeout=15, headers=agent, verify=tls_context()
            ) as client:
                barrier.wait()
                card = client.get("/v1/cards", params={"from": "+14155550123"}).json()
                names.append(card["profile"]["name"])

        threads = [threading.Thread(target=look_up, args=(n,)) for n in range(200)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert names == ["Ada Lovelace"] * 200
    by_section = sandbox.control.stats()["profile_api"]["by_section"]
    # One request per section (and one for the second candidate's traits), for all four.
    assert sum(by_section.values()) == 8, by_section


def test_after_one_pass_every_instance_and_worker_is_warm(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    with instances(sandbox, tmp_path, 2) as served:
        first, second = (httpx.Client(base_url=s.url, timeout=15, headers=agent) for s in served)
        with first, second:
            for caller in CALLERS:
                assert first.get("/v1/cards", params={"from": caller}).status_code == 200
            cold = upstream_requests(sandbox)
            assert cold > 0
            for client in (first, second):
                for _ in range(4):  # every worker of both instances, whichever answers
                    for caller in CALLERS:
                        assert client.get("/v1/cards", params={"from": caller}).status_code == 200
            assert upstream_requests(sandbox) == cold


def test_lookups_go_on_when_redis_is_down(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    with instances(sandbox, tmp_path, 1, redis_url="redis://127.0.0.1:1/0") as (served,):
        with httpx.Client(base_url=served.url, timeout=15, headers=agent) as client:
            cards = [client.get("/v1/cards", params={"from": "+14155550123"}) for _ in range(10)]
        assert [c.status_code for c in cards] == [200] * 10
        assert cards[-1].json()["profile"]["name"] == "Ada Lovelace"
        assert "Redis at 127.0.0.1:1 is unavailable" in served.logs()


def test_the_tests_redis_is_there() -> None:
    assert redis.Redis.from_url(REDIS_URL).ping()


def test_a_cold_storm_on_two_instances_keeps_within_the_spaces_rate(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    """Two instances of two workers, each worker would take half the rate on its own: together
    they keep to one pace, so Segment (the sandbox, limiting at the same rate) refuses none and
    no second holds more than the rate."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    sandbox = make_sandbox(data="demo", rate_limit=20)
    token = sandbox.control.issue_agent_token()["token"]
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(sandbox.url, UNLIMITED, rate_limit=20), encoding="utf-8")
    env = {**connector_env(sandbox.url), "REDIS_URL": REDIS_URL}
    callers = [f"+1650555{n:04d}" for n in range(60)]  # unknown: none cached
    with ExitStack() as stack:
        # One client per instance, made before the storm: sixty made at once would keep this
        # process (the sandbox's) busy for a second, and bunch the requests it counts.
        clients = [
            stack.enter_context(
                httpx.Client(
                    base_url=stack.enter_context(
                        served_process(config, env, workers=2, threads=64)
                    ).url,
                    timeout=15,
                    headers={"Authorization": f"Bearer {token}"},
                    limits=httpx.Limits(max_connections=len(callers)),
                )
            )
            for _ in range(2)
        ]
        statuses: list[int] = []

        def look_up(n: int) -> None:
            answer = clients[n % 2].get("/v1/cards", params={"from": callers[n]})
            statuses.append(answer.status_code)

        threads = [threading.Thread(target=look_up, args=(n,)) for n in range(len(callers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    profile_api = sandbox.control.stats(detail=True)["profile_api"]
    by_status = profile_api["by_status"]
    assert by_status.get("429", 0) == 0, by_status
    # Counted where Segment counts: on arrival. The pace grants at most 20 a second; a machine
    # so loaded that granted requests leave late can bunch a few into the next second (28 seen
    # with a load average of 3.6 on 2 cores), so a quarter over is allowed here. Without the
    # pace the storm sends hundreds in its first second.
    assert profile_api["max_per_second"] <= 25
    # Twice what the pace can answer in a lookup's 4 s (2 requests per caller, one per phone
    # format): the lookups that got their first slot finish, the others are refused in time
    # (unavailable), and at least 3/4 of the slots go to lookups that finish (first come, first
    # served would give each caller its first request and few their second: 43% measured).
    pace = Pace.within(20)
    answerable = (4 / pace.interval + 1 + pace.burst) / 2
    assert statuses.count(200) >= 0.75 * answerable, statuses
    assert set(statuses) <= {200, 503}, statuses


def test_a_token_is_checked_with_twilio_once_for_the_deployment(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    with instances(sandbox, tmp_path, 2) as served:
        for n in range(24):  # every worker of both instances, whichever answers
            with httpx.Client(
                base_url=served[n % 2].url, timeout=15, headers=agent, verify=tls_context()
            ) as client:
                assert client.get("/v1/cards", params={"from": "+14155550123"}).status_code == 200
    assert sandbox.control.stats()["twilio"] == {"valid": 1}


def test_an_agents_limit_is_the_deployments(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    limits = "\n[auth]\nagent_lookups_per_minute = 10\nfailed_auth_per_minute = 5\n"
    with instances(sandbox, tmp_path, 2, auth=limits) as served:
        clients = [httpx.Client(base_url=s.url, timeout=15) for s in served]
        lookups = [
            clients[n % 2].get("/v1/cards", params={"from": "+14155550123"}, headers=agent)
            for n in range(16)
        ]
        junk = {"Authorization": "Bearer not-a-token-at-all"}
        failures = [clients[n % 2].get("/v1/cards", headers=junk) for n in range(10)]
        for client in clients:
            client.close()
    assert [r.status_code for r in lookups] == [200] * 10 + [429] * 6
    assert [r.status_code for r in failures] == [401] * 5 + [429] * 5


def test_readyz_says_which_version_each_instance_serves(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path
) -> None:
    env = {**connector_env(sandbox.url), "REDIS_URL": REDIS_URL}
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(connection_toml(sandbox.url, UNLIMITED), encoding="utf-8")
    edited = connection_toml(sandbox.url, UNLIMITED).replace("Owl Goods (demo)", "Owl (edit)")
    second.write_text(edited, encoding="utf-8")
    with ExitStack() as stack:
        urls = [
            stack.enter_context(served_process(config, env, workers=2)).url
            for config in (first, second)
        ]
        details = [httpx.get(f"{url}/readyz", headers=agent, timeout=15).json() for url in urls]
        summary = httpx.get(f"{urls[0]}/readyz", timeout=15).json()
    shared = details[1]["shared"]
    assert shared["available"] is True and shared["error"] is None
    assert set(shared["instances"].values()) == {d["version"] for d in details}
    assert len(shared["instances"]) == 2 and shared["versions_agree"] is False
    assert summary == {"ready": True}  # a probe without credentials learns nothing more


def test_an_event_delivered_by_one_instance_refreshes_the_card_on_every_other(
    sandbox: RunningSandbox, agent: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    """The deployment of issue 11: Redis and the PostgreSQL outbox, two instances."""
    config = tmp_path / "connection.toml"
    writeback = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    config.write_text(connection_toml(sandbox.url, UNLIMITED + writeback), encoding="utf-8")
    env = {**connector_env(sandbox.url), "REDIS_URL": REDIS_URL, "DATABASE_URL": database_url}
    with ExitStack() as stack:
        first, second = (
            stack.enter_context(httpx.Client(base_url=s.url, timeout=15, headers=agent))
            for s in (stack.enter_context(served_process(config, env, workers=2)) for _ in range(2))
        )
        ada = {"from": "+14155550123"}
        before = first.get("/v1/cards", params=ada).json()  # cached for a minute, shared
        assert all(e["event"] != ENGAGEMENT["event"] for e in before["events"])
        sent = second.post("/v1/events", json={**ENGAGEMENT, **ada})
        assert sent.status_code == 202
        deadline, latest = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            latest = first.get("/v1/cards", params=ada).json()["events"][0]["event"]
            if latest == ENGAGEMENT["event"]:
                break
            time.sleep(0.2)
    assert latest == ENGAGEMENT["event"]
    delivered = list(redis.Redis.from_url(REDIS_URL).scan_iter("connector:delivered:*"))
    assert len(delivered) == 1 and b"+1415" not in delivered[0]  # a digest names the caller
