"""A refused connection file, explained: the file, the key (a typo gets a suggestion), why."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
)

from connector.config.schema import ConnectionFile


class ConfigError(ValueError):
    """A connection file the service refuses, with the file, the key and the reason."""

    def __init__(self, path: Path, key: str | None, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {reason}")


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key" + _did_you_mean(error["loc"])
    if error["type"] == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return re.sub(r"^Value error, ", "", message)


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """A suggestion for a misspelt key, from the keys its section accepts."""
    model: type[BaseModel] = ConnectionFile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return ""
        model = inner
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else " (see config/connection.example.toml)"
