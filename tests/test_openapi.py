"""`/openapi.json` describes every route the connector serves, with the models it really returns."""

from __future__ import annotations

import httpx

from connector.cards.models import ProfileCard
from connector.web.models import Health, Readiness, StudioLookup
from connector.writeback.history import CardHistory
from tests.conftest import RunningConnector


def test_every_route_is_documented_and_nothing_else(connector: RunningConnector) -> None:
    document = connector.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (rule.rule, method)
        for rule in connector.app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS") and rule.endpoint != "static"
    }
    assert documented == served


def test_schemas_are_defined_for_every_reference(connector: RunningConnector) -> None:
    document = connector.http.get("/openapi.json").json()
    text = str(document["paths"])
    for name in (
        "ProfileCard",
        "StudioLookup",
        "EventAccepted",
        "Readiness",
        "ErrorBody",
        "LookupRequest",
        "EventRequest",
        "Health",
        "CardHistory",
        "Unlinked",
        "UnlinkRequest",
    ):
        assert f"#/components/schemas/{name}" in text
        assert name in document["components"]["schemas"]


def test_real_answers_match_the_documented_models(connector: RunningConnector) -> None:
    ProfileCard.model_validate(connector.card(**{"from": "+14155550123"}).json())
    ProfileCard.model_validate(connector.card(**{"from": "+14155550100"}).json())
    StudioLookup.model_validate(
        connector.http.post("/v1/studio/lookup", data={"From": "+14155550123"}).json()
    )
    Readiness.model_validate(connector.http.get("/readyz").json())
    Health.model_validate(connector.http.get("/healthz").json())
    CardHistory.model_validate(
        connector.http.get("/v1/cards/history", params={"from": "+14155550123"}).json()
    )


def test_the_card_page_takes_nothing_in_its_url(connector: RunningConnector) -> None:
    """The CRM container's page: the token and the caller come in a form body, never a URL."""
    document = connector.http.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"].values()
    assert all(scheme.get("in") != "query" for scheme in schemes)
    page = document["paths"]["/cards/view"]
    assert page["get"]["security"] == [] and "parameters" not in page["get"]
    assert "parameters" not in page["post"] and "security" not in page["post"]  # the defaults
    assert set(page["post"]["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    # What the document calls public answers without credentials.
    public = [
        path
        for path, item in document["paths"].items()
        if item.get("get", {}).get("security") == []
    ]
    assert {"/cards/view", "/cards/view.js"} <= set(public)
    for path in public:
        assert httpx.get(f"{connector.url}{path}", timeout=15).status_code == 200, path
