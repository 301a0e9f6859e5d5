"""What the admin's console shows: the connection in use, health figures, the outbox.

Plain data for `templates/admin_console.html`; no secret is ever read into it, only whether
each is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from connector.config.loading import Connection
from connector.errors import OutboxUnavailable
from connector.metrics import (
    Reading,
    delta_buckets,
    figures,
    label_values,
    multiprocess_dir,
    quantile,
    total,
)
from connector.state.instances import InstanceVersions
from connector.web.metrics import outbox_store
from connector.web.registry import services

LATENCY = "connector_upstream_request_seconds"
ERRORS = "connector_upstream_errors_total"


@dataclass(frozen=True)
class Instance:
    name: str
    version: str
    seen: str


@dataclass(frozen=True)
class RefusedEdit:
    file: str
    key: str
    reason: str


@dataclass(frozen=True)
class ConnectionView:
    friendly_name: str
    space_id: str
    region: str
    profile_api_url: str
    version: str
    loaded_at: str
    file: str
    refused: RefusedEdit | None
    secrets: list[tuple[str, bool]]  # (what, whether it is set): never the value
    instances: list[Instance]


@dataclass(frozen=True)
class SectionHealth:
    section: str
    requests: int
    p50_ms: float | None
    p95_ms: float | None
    errors: int


@dataclass(frozen=True)
class HealthView:
    source: str  # whose figures: this process's, or every worker's
    window: str  # over what time
    sections: list[SectionHealth]
    rate_limited: int
    budget_in_use: float
    budget_slots: float
    cache_hit_rate: float | None
    cache_entries: int
    token_checks: dict[str, int]
    refusals: dict[str, int]


@dataclass(frozen=True)
class OutboxView:
    backend: str
    enabled: bool
    exists: bool
    error: str | None = None
    pending: int = 0
    oldest_pending: str = "-"
    dead: int = 0
    dead_letters: list[tuple[str, str, str]] = field(default_factory=list)  # id, reason, when


def connection_view(current: Connection) -> ConnectionView:
    holder = services().holder
    section = current.file.connection
    error = holder.error
    refused = None
    if error is not None:
        refused = RefusedEdit(str(error.path), error.key or "(the whole file)", error.reason)
    writeback = current.file.writeback
    secrets = [
        (f"Profile API token ({section.token_env})", bool(current.token.get_secret_value())),
        (
            f"Write key ({writeback.write_key_env})",
            bool(holder.environ.get(writeback.write_key_env, "").strip()),
        ),
        ("Twilio auth token (TWILIO_AUTH_TOKEN)", bool(current.twilio.auth_token)),
        ("Admin Basic credentials", current.admin_basic_auth is not None),
    ]
    return ConnectionView(
        friendly_name=section.friendly_name,
        space_id=section.space_id,
        region=section.region,
        profile_api_url=current.profile_api_url,
        version=current.version,
        loaded_at=_when(holder.loaded_at),
        file=str(holder.path),
        refused=refused,
        secrets=secrets,
        instances=_instances(),
    )


def _instances() -> list[Instance]:
    """Every instance seen in the last minute, as Redis records them (with REDIS_URL)."""
    redis = services().redis
    records = InstanceVersions(redis).records() if redis is not None else None
    seen = sorted((records or {}).items())
    return [Instance(name, version, _when(at)) for name, (version, at) in seen]


def health_view() -> HealthView:
    mine = figures()
    now, before, seconds = mine.window()
    source = (
        "every worker of this instance (summed from gunicorn's multiprocess files)"
        if mine.multiprocess and multiprocess_dir()
        else "this process"
    )
    window = f"over the last {seconds / 60:.0f} minutes" if seconds else "since it started"
    sections = [
        _section(now, before, name)
        for name in sorted(
            set(label_values(now, f"{LATENCY}_count", "section"))
            | set(label_values(now, ERRORS, "section"))
        )
    ]
    hits = _delta(now, before, "connector_card_cache_lookups_total", result="hit")
    misses = _delta(now, before, "connector_card_cache_lookups_total", result="miss")
    return HealthView(
        source=source,
        window=window,
        sections=sections,
        rate_limited=int(_delta(now, before, "connector_upstream_rate_limited_total")),
        budget_in_use=total(now, "connector_rate_budget_in_use"),
        budget_slots=total(now, "connector_rate_budget_slots"),
        cache_hit_rate=hits / (hits + misses) if hits + misses else None,
        cache_entries=int(total(now, "connector_card_cache_entries")),
        token_checks=_by(now, before, "connector_flex_token_checks_total", "result"),
        refusals=_by(now, before, "connector_auth_refusals_total", "status"),
    )


def _section(now: Reading, before: Reading, name: str) -> SectionHealth:
    buckets = delta_buckets(now, before, LATENCY, section=name)
    p50, p95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
    return SectionHealth(
        section=name,
        requests=int(_delta(now, before, f"{LATENCY}_count", section=name)),
        p50_ms=None if p50 is None else p50 * 1000,
        p95_ms=None if p95 is None else p95 * 1000,
        errors=int(_delta(now, before, ERRORS, section=name)),
    )


def _delta(now: Reading, before: Reading, name: str, **labels: str) -> float:
    return total(now, name, **labels) - total(before, name, **labels)


def _by(now: Reading, before: Reading, name: str, label: str) -> dict[str, int]:
    return {
        value: int(_delta(now, before, name, **{label: value}))
        for value in label_values(now, name, label)
    }


def outbox_view(current: Connection) -> OutboxView:
    lazy, enabled = services().outbox, current.file.writeback.enabled
    try:
        box = outbox_store()
        if box is None:
            return OutboxView(lazy.backend, enabled, exists=False)
        depth = box.depth()
        dead = box.dead_letters(limit=50)
    except OutboxUnavailable as error:
        return OutboxView(lazy.backend, enabled, exists=True, error=error.message)
    oldest = depth.oldest_pending_age
    return OutboxView(
        backend=lazy.backend,
        enabled=enabled,
        exists=True,
        pending=depth.pending,
        oldest_pending=f"{oldest:.0f} s" if oldest is not None else "-",
        dead=depth.dead,
        dead_letters=[(message_id, reason, _when(at)) for message_id, reason, at in dead],
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
