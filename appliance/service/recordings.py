"""Recording on demand: what is heard, to WAV files in the state directory.

`appliance record start [NAME] | stop | list` (the socket, OSC, a MIDI or GPIO
action "record" that toggles).  Names are validated as strictly as preset
names (they may come from the network): no paths, one directory.  A recording
refuses to start with less than MIN_FREE bytes free and ends by itself, its
file complete and valid, when the disk gets there; it goes on across an
engine restart (a reload that changes the audio or the orchestra).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.controls.inbox import Action, Record
from appliance.errors import ApplianceError, EngineError, ParamError
from appliance.service.presets import NAME as _NAME  # the same rule: names may come from the network

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument

log = logging.getLogger("appliance")

MIN_FREE = 64 * 1024 * 1024      # bytes a recording leaves free on the disk


class RecordingError(ParamError):
    """A recording name is not usable."""


class Recordings:
    def __init__(self, directory: Path, instrument: Instrument, min_free: int = MIN_FREE) -> None:
        self.directory = directory
        self.instrument = instrument
        self.min_free = min_free

    def path(self, name: str) -> Path:
        stem = name[:-4] if name.endswith(".wav") else name
        if not _NAME.fullmatch(stem) or stem.endswith((".prev", ".tmp")):
            raise RecordingError(f"a recording name is 1..40 letters, digits, spaces or _.+- "
                                 f"(starting with a letter or digit), got {name!r}")
        return self.directory / f"{stem}.wav"

    def existing(self, name: str) -> Path:
        """A recording that is there (for a download); the one being written is not, yet."""
        path = self.path(name)
        recorder = self.instrument.engine.recording
        if recorder is not None and recorder.path == path:
            raise RecordingError(f"{path.name!r} is still being recorded: stop it first")
        if not path.is_file():
            raise RecordingError(f"no recording {name!r}")
        return path

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.glob("*.wav") if _NAME.fullmatch(p.stem))

    # -- in the control loop -------------------------------------------------------------

    def command(self, command: Record) -> dict[str, Any]:
        return self.start(command.name) if command.start else self.stop()

    def toggle(self, action: Action) -> None:
        """The "record" action of a MIDI control or a button."""
        try:
            self.stop() if self.instrument.engine.recording is not None else self.start(None)
        except ApplianceError as exc:
            self.instrument.error(f"{action.source}: {exc}")

    def start(self, name: str | None) -> dict[str, Any]:
        path = self.path(name or time.strftime("take %Y-%m-%d %H.%M.%S"))
        if self.instrument.engine.recording is not None:
            raise ApplianceError(f"already recording to {self.instrument.engine.recording.path.name}")
        if path.exists():
            raise RecordingError(f"a recording {path.name!r} exists: choose another name")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.directory).free
        except OSError as exc:
            raise ApplianceError(f"cannot record in {self.directory}: {exc.strerror or exc}") from None
        if free < 2 * self.min_free:
            raise ApplianceError(f"the disk is nearly full ({free // 2**20} MiB free): not recording")
        try:
            self.instrument.engine.start_recording(path, self.min_free)
        except (EngineError, OSError) as exc:
            raise ApplianceError(f"cannot record: {exc}") from None
        log.info("recording to %s", path)
        return {"recording": path.name, "minutes_free": round(free / (6 * self.instrument.layout.sample_rate * 60))}

    def stop(self) -> dict[str, Any]:
        recorder = self.instrument.engine.stop_recording()
        if recorder is None:
            raise ApplianceError("not recording")
        seconds = round(recorder.frames_total / recorder.sample_rate, 2)
        log.info("recorded %s (%.1f s)", recorder.path, seconds)
        return {"recorded": recorder.path.name, "seconds": seconds, "ended": recorder.ended}

    def status(self) -> dict[str, Any] | None:
        recorder = self.instrument.engine.recording
        if recorder is None:
            return None
        return {"file": recorder.path.name, "seconds": round(recorder.frames_total / recorder.sample_rate, 1),
                "ended": recorder.ended}
