"""The web page's secret: a token in the state directory, readable by the service alone (0600).

Made once, on the first start with the page on, and kept: a phone that has it
in a cookie stays let in across restarts.  Deleting the file (and restarting)
locks every browser out until it is given the new URL (`appliance web-url`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from appliance.service import atomic

log = logging.getLogger("appliance")

FILE = "web-token"
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def load_or_create(state_dir: Path) -> str:
    """The token kept in `state_dir`, made if missing or unusable.  Where the state directory
    cannot be written, a token for this run only (logged as such)."""
    path = state_dir / FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 32 and set(token) <= _ALPHABET:
            return token
    except (OSError, UnicodeDecodeError):
        pass
    token = secrets.token_urlsafe(32)          # 256 bits
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, token.encode() + b"\n", mode=0o600)
    except OSError as exc:
        log.warning("cannot keep the web token in %s (%s): it changes at every start", path, exc.strerror or exc)
    return token


def matches(given: str | None, token: str) -> bool:
    """In constant time: how much of a guess was right must not show in the time taken."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
