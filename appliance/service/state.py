"""Saved state that survives power cuts: presets, the last state, the boot log.

Every file is JSON with a schema version and a checksum of its content:

    {"schema": 1, "kind": "preset", "sha256": "...", "data": {...}}

Writing keeps the previous good copy: the new content goes to a temporary
file, is fsynced, the current file is renamed to NAME.prev, the temporary
file is renamed into place and the directory is fsynced.  A power cut at any
moment leaves the old file, the new one, or (between the two renames) the
.prev copy.  Reading checks the schema and the checksum and falls back to
.prev when the file is missing or damaged, saying what it found.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.service.atomic import fsync_directory, write_bytes

SCHEMA = 1
MAX_BYTES = 4 * 1024 * 1024      # presets and the last state are a few KiB


def require(condition: bool, what: str) -> None:
    """For shape checks: ValueError(what) unless condition holds."""
    if not condition:
        raise ValueError(f"wrong shape: {what}")


@dataclass(frozen=True)
class Loaded:
    data: dict[str, Any] | None
    problem: str | None        # what was wrong, if the file or its copy had to be skipped


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode(kind: str, data: dict[str, Any]) -> bytes:
    envelope = {"schema": SCHEMA, "kind": kind, "sha256": _digest(data), "data": data}
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


def decode(raw: bytes, kind: str) -> dict[str, Any]:
    """The data of a saved file; ValueError saying why if it is not sound."""
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(envelope, dict):
        raise ValueError("not a saved-state file")
    if envelope.get("schema") != SCHEMA:
        raise ValueError(f"schema {envelope.get('schema')!r}, expected {SCHEMA}")
    if envelope.get("kind") != kind:
        raise ValueError(f"holds a {envelope.get('kind')!r}, expected a {kind!r}")
    data = envelope.get("data")
    if not isinstance(data, dict) or envelope.get("sha256") != _digest(data):
        raise ValueError("checksum mismatch (damaged)")
    return data


def save(path: Path, kind: str, data: dict[str, Any]) -> None:
    """Write atomically, keeping the previous copy as PATH.prev."""
    raw = encode(kind, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.replace(path, _previous(path))
    write_bytes(path, raw, mode=0o640)


def load(path: Path, kind: str, shape: Callable[[dict[str, Any]], None] | None = None) -> Loaded:
    """The file's data, or its previous copy's if it is missing or damaged.

    `shape` checks what the data holds (ValueError if it is not what this
    version writes): a file with a good checksum can still hold the wrong
    shape, written by another version or by hand.
    """
    problems = []
    for candidate in (path, _previous(path)):
        try:
            data = decode(paths.read_regular(candidate, MAX_BYTES), kind)
            if shape is not None:
                shape(data)
            return Loaded(data, None if not problems else f"{'; '.join(problems)}; using {candidate.name}")
        except FileNotFoundError:
            if candidate == path and _previous(path).exists():
                problems.append(f"{path} is missing")
        except (OSError, ValueError) as exc:
            problems.append(f"{candidate} is unusable: {exc}")
    return Loaded(None, "; ".join(problems) or None)


def remove(path: Path) -> None:
    for candidate in (path, _previous(path)):
        candidate.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")
