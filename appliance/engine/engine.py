"""Csound, through ctcsound: the audio engine and the owner of the sample clock.

Python never runs on Csound's audio thread.  No Python callback is installed:
Csound's messages go to its own message buffer (a C callback) and are drained
from a Python thread; parameters go in through control channels; steps go in
as score events through the performance thread's queue.

Two ways to run:
* real time: Csound's performance thread (native, real-time priority where the
  system allows), paced by the audio device (ALSA, JACK, or the null module,
  which sleeps to the wall clock);
* offline: the caller performs k-cycle after k-cycle, as fast as the CPU
  allows, into a WAV file.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import ctcsound

from appliance.engine.orchestra import REQUIRED_INSTRUMENTS, ClockLayout, Orchestra
from appliance.engine.recorder import MAX_DATA_BYTES, RING_CYCLES, WavRecorder
from appliance.engine.rtprio import create_with_priority
from appliance.errors import EngineError, OrchestraError

log = logging.getLogger("appliance.engine")

AUDIO_BACKENDS = ("null", "alsa", "jack")
STEP_WRITE = "StepWrite"

_MSG_TYPE_MASK = 0x7000
_MSG_ERROR = 0x1000
_MSG_WARNING = 0x4000
_XRUN = re.compile(r"underrun|overrun|xrun", re.IGNORECASE)
# end-of-performance statistics that Csound sends with the error attribute
_BENIGN = re.compile(r"end of score|overall (amps|samples out of range)|^\s*0 errors in performance"
                     r"|^Score finished|elapsed time", re.IGNORECASE)


@dataclass(frozen=True)
class RealtimeOutput:
    """Play through an audio device."""

    backend: str = "null"          # null | alsa | jack
    device: str = "default"        # ALSA device (hw:0, plughw:1 ...) or JACK port prefix
    buffer: int = 256              # -b, frames
    hardware_buffer: int = 1024    # -B, frames
    realtime_priority: int = 70    # SCHED_FIFO priority of Csound's thread, 0: do not ask

    def options(self) -> list[str]:
        if self.backend not in AUDIO_BACKENDS:
            known = ", ".join(AUDIO_BACKENDS)
            raise EngineError(f"unknown audio backend {self.backend!r}; use one of {known}")
        dac = "-odac" if self.backend == "null" or self.device == "default" else f"-odac:{self.device}"
        options = [dac, f"-+rtaudio={self.backend}", f"-b{self.buffer}", f"-B{self.hardware_buffer}"]
        if self.backend == "jack":
            options.append("-+jack_client=appliance")
        return options


@dataclass(frozen=True)
class FileOutput:
    """Render into a 24-bit WAV file, faster than real time."""

    path: Path

    def options(self) -> list[str]:
        return [f"-o{self.path}", "-W", "-3"]


@dataclass(frozen=True)
class NoOutput:
    """Compile and start, play nothing (to check an orchestra)."""

    def options(self) -> list[str]:
        return ["-n"]


Output = RealtimeOutput | FileOutput | NoOutput


def check_orchestra(orchestra: Orchestra, layout: ClockLayout) -> None:
    """Compile an orchestra and check its instruments, without playing (OrchestraError if not)."""
    with Engine(layout) as engine:
        engine.open(orchestra, NoOutput())


class Engine:
    """One Csound instance performing one orchestra."""

    def __init__(self, layout: ClockLayout) -> None:
        self.layout = layout
        self.realtime = False            # running at real-time priority
        self.warnings: list[str] = []
        self.xruns = 0
        self._cs: ctcsound.Csound | None = None
        self._thread: ctcsound.CsoundPerformanceThread | None = None
        self._output: Output | None = None
        self._numbers: dict[str, int] = {}
        self._partial = ""
        self._drain_lock = threading.Lock()
        # other threads (the control socket, the recorder) read channels: never while Csound is destroyed
        self._api_lock = threading.RLock()
        self._recorder: WavRecorder | None = None

    # -- life cycle --------------------------------------------------------

    def open(self, orchestra: Orchestra, output: Output) -> None:
        """Compile the orchestra and start Csound (not yet performing).

        Raises OrchestraError (file and line) if the orchestra does not
        compile or lacks an instrument, EngineError if the audio device
        cannot be opened.
        """
        if self._cs is not None:
            raise EngineError("the engine is already open")
        # SIGINT and SIGTERM are the service's to handle (a clean stop, the state
        # saved); Csound's own handlers would stop the performance under it.  Only
        # the first call in a process counts, and it must come before any Csound().
        ctcsound.csoundInitialize(ctcsound.CSOUNDINIT_NO_SIGNAL_HANDLER | ctcsound.CSOUNDINIT_NO_ATEXIT)
        cs = ctcsound.Csound()
        cs.createMessageBuffer(False)
        for option in ["-d", "-m4", "-+msg_color=0", "--nchnls=2", *output.options()]:
            cs.setOption(option)
        composed = orchestra.compose(self.layout)
        self._cs, self._output = cs, output
        try:
            if cs.compileOrc(composed.text) != 0:
                raise composed.compile_error(self._take_messages())
            cs.readScore('f 0 z\ni "Clock" 0 -1\ni "Fx" 0 -1\ni "Master" 0 -1\n')
            if cs.start() != 0:
                raise EngineError("Csound could not start: " + " ".join(self._take_messages()[-3:]).strip())
            self._numbers = self._instrument_numbers(composed.pieces[2].name)
        except BaseException:
            self._destroy()
            raise

    def perform(self, record: Path | WavRecorder | None = None) -> None:
        """Start performing in real time on Csound's own thread.

        With `record`, what is played is also written to a 24-bit WAV file,
        from the first sample, by a Python thread (see recorder.py); a
        recorder detached from an engine before a restart goes on in its file.
        """
        if not isinstance(self._output, RealtimeOutput) or self._cs is None:
            raise EngineError("perform() needs an engine opened on a real-time output")
        cs = self._cs
        if record is not None:
            # before the first k-cycle, so the file starts at the performance's first sample
            frames = RING_CYCLES * self.layout.ksmps
            cs.scoreEvent("i", [float(self._numbers["Recorder"]), 0.0, -1.0, float(frames)])
            if isinstance(record, WavRecorder):
                record.attach(frames, self.channel, cs.table)
                self._recorder, record = record, None
            else:
                self._recorder = WavRecorder(record, self.layout.sample_rate, frames, self.channel, cs.table)
        priority = self._output.realtime_priority
        spawned = create_with_priority(lambda: ctcsound.CsoundPerformanceThread(cs.csound()), priority)
        self._thread = spawned.value
        self.realtime = spawned.realtime
        if spawned.warning:
            self.warnings.append(spawned.warning)
            log.warning(spawned.warning)
        self._thread.play()
        if self._recorder is not None and record is not None:
            self._recorder.start()

    @property
    def recording(self) -> WavRecorder | None:
        return self._recorder

    def start_recording(self, path: Path, min_free: int, max_data: int = MAX_DATA_BYTES) -> WavRecorder:
        """While performing: write what is heard from now on to `path` (24-bit WAV), until
        stop_recording(), the engine closes, the disk has less than `min_free` bytes left, or the
        file holds `max_data` bytes of audio (WAV's own limit unless told less)."""
        if self._thread is None or self._cs is None:
            raise EngineError("recording needs the engine performing")
        if self._recorder is not None:
            raise EngineError(f"already recording to {self._recorder.path}")
        cs = self._cs
        frames = RING_CYCLES * self.layout.ksmps
        # the last recording's table and count must not be read as this one's
        cs.setControlChannel("record_table", 0.0)
        cs.setControlChannel("record_frames", 0.0)
        recorder = WavRecorder(path, self.layout.sample_rate, frames, self.channel, cs.table, min_free=min_free,
                               max_data=max_data)
        self._event([float(self._numbers["Recorder"]), 0.0, -1.0, float(frames)])
        self._recorder = recorder
        recorder.start()
        return recorder

    def stop_recording(self) -> WavRecorder | None:
        """End the recording (the file is complete when this returns); None if there was none."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return None
        self._event([-float(self._numbers["Recorder"]), 0.0, 0.0])
        recorder.stop()
        return recorder

    def perform_cycle(self) -> bool:
        """Offline: perform one k-cycle.  False when Csound has finished."""
        if self._cs is None or self._thread is not None:
            raise EngineError("perform_cycle() needs an engine opened on a file output")
        return self._cs.performKsmps() == 0

    def close(self, keep_recording: bool = False) -> WavRecorder | None:
        """Stop performing and free Csound.  Safe to call twice.  With keep_recording, the
        recording is not finished but handed back, for the next engine to go on with."""
        if self._thread is not None:
            self._thread.stop()
            self._thread.join()
            self._thread = None
        if keep_recording and self._recorder is not None:
            kept, self._recorder = self._recorder, None
            kept.detach()
            self._destroy()
            return kept
        if self._recorder is not None:
            self._recorder.stop()
            if self._recorder.frames_lost:
                log.error("the recording lost %d frames: Python fell behind by more than its ring",
                          self._recorder.frames_lost)
            self._recorder = None
        self._destroy()
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._cs is not None

    @property
    def running(self) -> bool:
        """True while the performance goes on (real time: the thread has not stopped)."""
        if self._thread is not None:
            return self._thread.status() == 0
        return self._cs is not None

    # -- talking to the orchestra -----------------------------------------

    def instrument(self, name: str) -> int:
        return self._numbers[name]

    def send_step(self, step: int, fields: list[float]) -> None:
        """Hand the clock the notes of one step (see instr StepWrite)."""
        self._event([float(self._numbers[STEP_WRITE]), 0.0, 0.0, float(step), *fields])

    def set_channel(self, name: str, value: float) -> None:
        with self._api_lock:
            self._require().setControlChannel(name, float(value))

    def channel(self, name: str) -> float:
        with self._api_lock:
            value, _ = self._require().controlChannel(name)
        return value

    # -- messages ------------------------------------------------------------

    def drain_messages(self) -> list[tuple[int, str]]:
        """Take Csound's messages as (logging level, line), counting xruns."""
        lines: list[tuple[int, str]] = []
        with self._drain_lock:
            cs = self._cs
            if cs is None:
                return lines
            while cs.messageCnt() > 0:
                text, attr = cs.firstMessage(), cs.firstMessageAttr()
                cs.popFirstMessage()
                level = {_MSG_ERROR: logging.ERROR, _MSG_WARNING: logging.WARNING}.get(
                    attr & _MSG_TYPE_MASK, logging.DEBUG)
                self._partial += text
                while "\n" in self._partial:
                    line, self._partial = self._partial.split("\n", 1)
                    if line.strip():
                        lines.append((logging.DEBUG if _BENIGN.search(line) else level, line.rstrip()))
        for _, line in lines:
            if _XRUN.search(line) and "record buffer" not in line:
                self.xruns += 1
        return lines

    # -- internals -------------------------------------------------------------

    def _require(self) -> ctcsound.Csound:
        if self._cs is None:
            raise EngineError("the engine is not open")
        return self._cs

    def _event(self, pfields: list[float]) -> None:
        if self._thread is not None:
            self._thread.scoreEvent(False, "i", pfields)
        else:
            self._require().scoreEvent("i", pfields)

    def _take_messages(self) -> list[str]:
        return [line for _, line in self.drain_messages()] + ([self._partial] if self._partial else [])

    def _instrument_numbers(self, orchestra_name: str) -> dict[str, int]:
        cs = self._require()
        numbers = {}
        for name in (STEP_WRITE, "Recorder", *REQUIRED_INSTRUMENTS):
            number = int(cs.evalCode(f'return nstrnum("{name}")'))
            if number <= 0:
                raise OrchestraError(orchestra_name, None, f"the orchestra has no instr {name}")
            numbers[name] = number
        self._take_messages()
        return numbers

    def _destroy(self) -> None:
        if self._cs is None:
            return
        for level, line in self.drain_messages():
            log.log(level, "csound: %s", line)
        with self._api_lock, self._drain_lock:
            cs, self._cs = self._cs, None
            cs.cleanup()
            cs.destroyMessageBuffer()
