"""What a remote surface (the control socket, OSC and the web page) may ask of the instrument.

Read-only snapshots for anything that only looks, and submit() for anything
that changes the instrument: the command goes into the control loop's inbox,
and the loop, the only writer, carries it out.  Surfaces see nothing else:
no engine, no hardware, no loop internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from appliance.controls.inbox import Command


class InstrumentApi(Protocol):
    def status(self) -> dict[str, Any]:
        """What the instrument is doing now."""

    def values(self) -> dict[str, float]:
        """Every parameter's current value."""

    def midi(self) -> dict[str, Any]:
        """MIDI devices, outputs, mappings and counters."""

    def logs(self, count: int) -> list[str]:
        """The last `count` lines logged."""

    # kind: "preset" (loaded at once) or "scene" (recalled on the next bar line)
    def stored_names(self, kind: str) -> list[str]: ...

    def save_stored(self, kind: str, name: str, values: dict[str, float]) -> None:
        """Write a preset or scene durably (PresetError for a bad name, OSError if the disk refuses)."""

    def delete_stored(self, kind: str, name: str) -> bool: ...

    def recording_names(self) -> list[str]:
        """The recordings in the state directory."""

    def recording_path(self, name: str) -> Path:
        """A recording's file, for a download (RecordingError for a bad or unknown name)."""

    def web_access(self) -> dict[str, Any] | None:
        """Where the web page listens and its token: {"host", "port", "token"}; None when off."""

    def submit(self, command: Command, timeout: float | None = None) -> Any:
        """Put a command in the loop's inbox; with a timeout, wait for the loop's answer."""
