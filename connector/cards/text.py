"""Keys as people read them."""

from __future__ import annotations

import re


def humanize(key: str) -> str:
    """`orders_90d` -> "Orders 90d", `lifetimeValue` -> "Lifetime value"."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ")
    text = " ".join(words.split())
    return text[:1].upper() + text[1:].lower() if text else key
