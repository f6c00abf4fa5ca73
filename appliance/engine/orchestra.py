"""Orchestras: the user's voices wrapped in the instrument's core.

The text given to Csound is one piece: a header, core_head.orc, the user's
orchestra, core_tail.orc and recorder.orc.  One compile, because Csound runs the global
code of only the last orchestra compiled before it starts; and a line map,
so a compile error names the user's file and line, not the composed text's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from appliance import paths
from appliance.errors import OrchestraError

MAX_BYTES = 1024 * 1024     # orchestras are text; the default one is 6 KiB

# instruments an orchestra must define (see orchestras/default.orc)
REQUIRED_INSTRUMENTS = ("Click", "Lead", "Bass", "Pad", "Perc", "Fx")

_LINE = re.compile(r"\bline:?\s*(\d+)", re.IGNORECASE)
_ERROR = re.compile(r"error|unable to|unexpected|not found|undefined|used before", re.IGNORECASE)


@dataclass(frozen=True)
class ClockLayout:
    """Constants the core orchestra is built with."""

    sample_rate: int
    ksmps: int
    steps_per_beat: int
    beats_per_bar: int
    tempo_min: float
    tempo_max: float
    ring_size: int = 256
    max_notes: int = 8

    @property
    def start_sample(self) -> int:
        """The first beat: the earliest onset the clock can place (cycle 0 looks two cycles ahead)."""
        return 2 * self.ksmps

    def header(self) -> str:
        return "\n".join([
            f"sr = {self.sample_rate}",
            f"ksmps = {self.ksmps}",
            "nchnls = 2",
            "0dbfs = 1",
            f"giRingSize = {self.ring_size}",
            f"giMaxNotes = {self.max_notes}",
            f"giStepsPerBeat = {self.steps_per_beat}",
            f"giBeatsPerBar = {self.beats_per_bar}",
            f"giStartSample = {self.start_sample}",
            f"giTempoMin = {self.tempo_min}",
            f"giTempoMax = {self.tempo_max}",
            "",
        ])


@dataclass(frozen=True)
class Piece:
    name: str
    text: str
    first_line: int  # line number of the piece's first line in the composed text

    @property
    def line_count(self) -> int:
        return self.text.count("\n")


@dataclass(frozen=True)
class Orchestra:
    """A user orchestra file."""

    path: Path
    text: str

    @classmethod
    def load(cls, path: Path) -> Orchestra:
        try:
            text = paths.read_regular(path, MAX_BYTES).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise OrchestraError(str(path), None, f"cannot read the orchestra: {why}") from None
        return cls(path, text)

    def compose(self, layout: ClockLayout) -> Composed:
        parts = [("<header>", layout.header()),
                 ("core_head.orc", core_text("core_head.orc")),
                 (str(self.path), self.text),
                 ("core_tail.orc", core_text("core_tail.orc")),
                 ("recorder.orc", core_text("recorder.orc"))]
        pieces, line = [], 1
        for name, text in parts:
            text = text if text.endswith("\n") else text + "\n"
            pieces.append(Piece(name, text, line))
            line += text.count("\n")
        return Composed(tuple(pieces))


@dataclass(frozen=True)
class Composed:
    """The composed orchestra text and where each line came from."""

    pieces: tuple[Piece, ...]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    def locate(self, line: int) -> tuple[str, int]:
        """(file, line) of a line of the composed text."""
        for piece in self.pieces:
            if piece.first_line <= line < piece.first_line + piece.line_count:
                return piece.name, line - piece.first_line + 1
        return self.pieces[-1].name, line

    def compile_error(self, messages: list[str]) -> OrchestraError:
        """Turn Csound's compiler messages into an error naming file and line."""
        user = self.pieces[2].name
        text = [m.strip() for m in messages if m.strip()]
        first = next((m for m in text if _ERROR.search(m)), "the orchestra does not compile")
        for message in text:
            found = _LINE.search(message)
            if found:
                name, line = self.locate(int(found.group(1)))
                return OrchestraError(name, line, first)
        return OrchestraError(user, None, first)


def core_text(name: str) -> str:
    """One of the instrument's own orchestra files (core_head.orc ...)."""
    return resources.files("appliance.engine").joinpath(name).read_text(encoding="utf-8")
