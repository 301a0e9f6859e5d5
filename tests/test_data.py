"""The demo data set covers what a demo needs; the synthetic generator is deterministic."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.sandbox.core import demo_data_path
from connector.sandbox.datagen import synthetic_messages, write_demo, write_synthetic
from tests.conftest import RunningSandbox, SandboxFactory


def test_the_shipped_demo_file_is_what_the_generator_writes() -> None:
    generated = io.StringIO()
    write_demo(generated)
    shipped = demo_data_path().read_text(encoding="utf-8")
    assert shipped == generated.getvalue(), "run: connector generate-data --demo --out " + str(
        demo_data_path()
    )


def traits(demo: RunningSandbox, identifier: str, **params: Any) -> dict[str, Any]:
    response = demo.profile(identifier, "traits", limit=200, **params)
    assert response.status_code == 200, identifier
    found: dict[str, Any] = response.json()["traits"]
    return found


def ids(demo: RunningSandbox, identifier: str) -> set[str]:
    data = demo.profile(identifier, "external_ids", limit=100).json()["data"]
    return {f"{e['type']}:{e['id']}" for e in data}


def test_demo_has_at_least_30_profiles_and_accounts(demo: RunningSandbox) -> None:
    summary = demo.http.get("/_sandbox").json()["profiles"]
    assert summary["users"] >= 30 and summary["accounts"] >= 3


@pytest.mark.parametrize(
    "phone",
    [
        "+14155550123",
        "+447700900123",
        "+33612345678",
        "+4915123456789",
        "+5511912345678",
        "+919876543210",
        "+819012345678",
        "+2348031234567",
        "+6581234567",
        "+27821234567",
        "+61491570156",
        "+14165550142",
        "+821012345678",
        "+525512345678",
    ],
)
def test_demo_phones_in_many_countries_resolve(demo: RunningSandbox, phone: str) -> None:
    assert demo.profile(f"phone:{phone}", "metadata").status_code == 200


def test_demo_whatsapp_users_and_their_subscriptions(demo: RunningSandbox) -> None:
    assert traits(demo, "user_id:u-joao")["whatsapp_opt_in"] is True
    profile = demo.control.profile("users", "user_id:u-joao")
    assert profile is not None
    assert {"type": "WHATSAPP", "status": "SUBSCRIBED"}.items() <= profile["subscriptions"][
        1
    ].items()


def test_demo_email_only_customers(demo: RunningSandbox) -> None:
    found = ids(demo, "email:fatima.zahra@example.com")
    assert found == {"user_id:u-fatima", "email:fatima.zahra@example.com"}


def test_demo_visitor_identified_later_keeps_earlier_page_views(demo: RunningSandbox) -> None:
    assert "anonymous_id:anon-visitor-1" in ids(demo, "user_id:u-nina")
    events = demo.profile("user_id:u-nina", "events", limit=100).json()["data"]
    assert sum(e["type"] == "page" for e in events) == 3


def test_demo_two_devices_merged(demo: RunningSandbox) -> None:
    assert {"anonymous_id:anon-sam-phone", "anonymous_id:anon-sam-laptop"} <= ids(
        demo, "user_id:u-sam"
    )


def test_demo_shared_family_email_does_not_merge(demo: RunningSandbox) -> None:
    assert "user_id:u-peter-parker" in ids(demo, "email:the.parkers@example.com")
    assert "email:the.parkers@example.com" not in ids(demo, "user_id:u-may-parker")


def test_demo_accounts_with_several_users(demo: RunningSandbox) -> None:
    links = demo.profile("group_id:acct-initech", "links", collection="accounts").json()["data"]
    assert len(links) == 4
    assert traits(demo, "group_id:acct-initech", collection="accounts")["name"] == "Initech"


def test_demo_audiences_and_computed_traits(demo: RunningSandbox) -> None:
    assert traits(demo, "user_id:u-grace", **{"class": "audience"}) == {"vip": True}
    assert set(traits(demo, "user_id:u-grace", **{"class": "computed_trait"})) == {
        "orders_90d",
        "favorite_category",
    }


def test_demo_events_span_two_weeks(demo: RunningSandbox) -> None:
    events = demo.profile("user_id:u-ada", "events", limit=100, sort="asc").json()["data"]
    oldest = datetime.fromisoformat(events[0]["timestamp"])
    newest = datetime.fromisoformat(events[-1]["timestamp"])
    now = datetime.now(UTC)
    assert now - oldest > timedelta(days=10) and now - newest < timedelta(days=1)
    assert {"Order Completed", "Product Viewed"} <= {e["event"] for e in events}


def test_synthetic_data_is_deterministic_and_unique() -> None:
    first, second = io.StringIO(), io.StringIO()
    write_synthetic(first, 300, seed=3)
    write_synthetic(second, 300, seed=3)
    assert first.getvalue() == second.getvalue()
    phones = [
        m["traits"]["phone"]
        for m in synthetic_messages(300, seed=3)
        if m["type"] == "identify" and "phone" in m["traits"]
    ]
    assert len(phones) == len(set(phones)) == 300


def test_synthetic_profiles_load_one_per_user(make_sandbox: SandboxFactory) -> None:
    running = make_sandbox(list(synthetic_messages(300, seed=4)))
    assert running.http.get("/_sandbox").json()["profiles"]["users"] == 300
