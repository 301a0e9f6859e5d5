"""Who handled an interaction and where, as a request says it: what the ledger keeps beside an
event (connector.writeback.ledger)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.auth.gate import current_principal
from connector.web.fields import body_fields
from connector.writeback.ledger import Interaction, task_ids_of


def request_interaction(given: Mapping[str, Any] | None = None) -> Interaction:
    """The agent (a Flex token's worker SID, else a WorkerSid field), the channel (Twilio's
    `Channel`) and Twilio's ids (TaskSid, CallSid, ...) of this request, plus `given`."""
    fields = {**body_fields(), **{k: v for k, v in (given or {}).items() if v is not None}}
    principal = current_principal()
    agent = principal.id if principal is not None and principal.kind == "agent" else None
    worker = fields.get("WorkerSid") or fields.get("worker_sid")
    channel = fields.get("Channel")
    return Interaction(
        agent=agent or (worker if isinstance(worker, str) else None),
        channel=channel if isinstance(channel, str) and channel else None,
        task_ids=task_ids_of(fields),
    )
