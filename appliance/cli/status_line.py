"""The one-line live status shown on a terminal, and logging that does not tear it."""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Any, TextIO

from appliance.instrument.report import Stats


def format_status(stats: Stats, beats_per_bar: int, music: dict[str, Any] | None = None) -> str:
    bar, beat = divmod(max(stats.beats - 1, 0), beats_per_bar)
    midi = "MIDI off" if "unavailable" in stats.midi else f"MIDI {stats.midi_devices}"
    state = "" if stats.running else "  STOPPED"
    safe = "  SAFE MODE" if stats.safe_mode else ""
    where = (f"  {music['section']} {music['bar_in_section']}/{music['section_bars']} {music['chord']:<6}"
             if music else "")
    return (f"{stats.tempo:6.1f} BPM  bar {bar + 1:>4}:{beat + 1}{where}  notes {stats.notes:>6}  "
            f"late {stats.late_notes}  xruns {stats.xruns}  CPU {stats.cpu_percent:4.1f}%  {midi}{state}{safe}")


class StatusLine:
    """Rewrites one line of a terminal in place."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.shown = False

    @property
    def enabled(self) -> bool:
        return self.stream.isatty()

    def show(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class StatusAwareHandler(logging.StreamHandler):
    """Clears the status line before a log line, so the two never mix."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__(status.stream)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        self.status.clear()
        super().emit(record)
