"""Following another clock in phase: Csound's clock steered onto a MIDI clock
master's beats, or onto an Ableton Link session's beat timeline.

Csound keeps owning the samples and places every note; Python never does.
What Python changes is the length of the clock's next beat: the exact tempo
in the "sync_tempo" channel, which the clock reads as each beat begins.
Each pass of the loop looks at the beat the clock has just dispatched, when
it will be heard (its sample on the wall clock, through the instrument's
AudioClockMap, one output buffer later on a sound card), and at the other
clock's beats as a straight line on the wall clock (for MIDI a line fitted
through the master's last ticks, so its jitter does not wobble the groove;
for Link the session's own timeline).  The beat that starts where ours ends
is then made as long as it takes to end on the other clock's next beat: a
nudge bounded to MAX_NUDGE of the tempo, so a late or early start is caught
up over a few beats, never by a jump that would bunch or drop steps.

A start is the one jump: after a MIDI Start (or Song Position) the clock
restarts on the master's next beat, on the same beat of the bar; with Link
the box starts on the session's next bar (its quantum), as Link's apps do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from appliance.controls.inbox import Action, SetParam
from appliance.controls.link import Timeline
from appliance.params import PARAMETERS

if TYPE_CHECKING:
    from appliance.controls.link import LinkSession
    from appliance.instrument.instrument import Instrument

MAX_NUDGE = 0.05          # a beat is at most 5 % longer or shorter than the other clock's
ALIGN_AHEAD = 0.05        # a restart onto the other clock's beat is placed at least this far ahead (s)
REALIGN = 0.25            # Link: a phase error over this many beats (the session re-timed) starts again
TEMPO_SAME = 0.001        # Link: BPM; the session carries a tempo as whole microseconds a beat
JOIN_WAIT = 1.0           # Link: the box changes nothing in a session it may still be joining (s)
LINK = "Ableton Link"


class PhaseLock:
    """Steers the clock onto a beat line; `on_bar`: restarts land on a bar (Link's quantum)
    rather than on the next beat."""

    def __init__(self, on_bar: bool) -> None:
        self.on_bar = on_bar
        self.error_ms: float | None = None       # our last beat against theirs (+: ours late)
        self._written = 0.0
        self._restarts = 0
        self._aligned_to: int | None = None     # the start (a count) we restarted onto
        self._restart_at: float | None = None   # the sample of that restart, until the clock is there

    def restart(self) -> None:
        """A new engine: its channels start afresh."""
        self._written = 0.0
        self._aligned_to = self._restart_at = None

    def idle(self, instrument: Instrument) -> None:
        """Not following (now): the tempo parameter rules the clock again."""
        self._write(instrument, 0.0)
        self.error_ms = None

    def steer(self, instrument: Instrument, now: float, line: Timeline, starts: int) -> None:
        """Keep our beats on `line`; a new `starts` count restarts the clock onto it."""
        if not instrument.audio_clock.observed:
            return
        channel = instrument.engine.channel
        if self._aligned_to != starts:
            self._align(instrument, line, now, starts)
            return
        if not instrument.transport:
            self.idle(instrument)
            return
        length = channel("clock_beat_length")
        if length <= 0 or line.period <= 0:
            return
        if self._restart_at is not None:
            if channel("clock_beat_sample") < self._restart_at - 1:
                return                  # the clock's beats are still those from before the restart
            self._restart_at = None
        rate = instrument.layout.sample_rate
        ours = instrument.audio_clock.wall((channel("clock_beat_sample") + length + _heard_after(instrument)) / rate)
        theirs = line.beat_zero + round((ours - line.beat_zero) / line.period) * line.period
        error = ours - theirs
        self.error_ms = round(1000 * error, 2)
        wanted = min(max(line.period - error, line.period * (1 - MAX_NUDGE)), line.period * (1 + MAX_NUDGE))
        self._write(instrument, 60.0 / wanted)

    def _align(self, instrument: Instrument, line: Timeline, now: float, starts: int) -> None:
        """Restart the clock on the line's next beat that can still be met (the next bar's
        first with on_bar), on the same beat of the bar, so the bars line up too.  If the
        transport is stopped the restart is written all the same: a start then waits for it."""
        heard_after = _heard_after(instrument)
        rate, bar = instrument.layout.sample_rate, instrument.layout.beats_per_bar
        beat = math.ceil((now + ALIGN_AHEAD + heard_after / rate - line.beat_zero) / line.period)
        if self.on_bar:
            beat = math.ceil(beat / bar) * bar
        at = line.beat_zero + beat * line.period                          # wall time, heard
        sample = (at - instrument.audio_clock.wall(0.0)) * rate - heard_after
        self._restarts += 1
        engine = instrument.engine
        engine.set_channel("transport_at", sample)
        engine.set_channel("transport_at_beat", float(beat % bar))
        engine.set_channel("transport_restart", float(self._restarts))
        if instrument.transport:
            engine.set_channel("transport", 1.0)        # after the restart: a deferred start waits for it
        self._write(instrument, 60.0 / line.period)
        self._aligned_to = starts
        self._restart_at = sample
        self.error_ms = None

    def _write(self, instrument: Instrument, tempo: float) -> None:
        if abs(tempo - self._written) > 1e-9:
            instrument.engine.set_channel("sync_tempo", tempo)
            self._written = tempo


class MidiSync:
    """Following a MIDI clock master: its tempo comes in as the tempo parameter (controls/
    meaning.py), its transport as actions; here its beats are followed in phase."""

    def __init__(self) -> None:
        self.lock = PhaseLock(on_bar=False)

    def steer(self, instrument: Instrument, now: float) -> None:
        follower = instrument.hardware.controls.follower
        fit = follower.beat_times() if instrument.hardware.controls.follow_clock else None
        if fit is None or not instrument.transport or not follower.fresh(now):
            self.lock.idle(instrument)               # not synced: the tempo parameter rules
            return
        self.lock.steer(instrument, now, Timeline(*fit), follower.starts)


class LinkSync:
    """Playing in an Ableton Link session.

    Tempo and transport go both ways: a change in the session (another peer)
    sets the box's tempo parameter and transport; a change on the box (a
    knob, the CLI, a button) is written to the session.  Each is told apart
    from the other by remembering what was last exchanged.

    Joining follows Link's test plan.  For JOIN_WAIT, or until a peer is
    found, the box writes nothing and stays silent, so it takes the session's
    tempo and never overrides it.  With start/stop sync, a box that finds
    peers joins stopped (a joining app does not start, nor is started by, a
    session: STARTSTOPSTATE-2) until it or the session starts; a box alone
    starts its session and plays, as it does on its own clock.  The clock
    follows the session's timeline in phase, and every start waits for the
    session's next bar.
    """

    def __init__(self) -> None:
        self.lock = PhaseLock(on_bar=True)
        self.starts = 0
        self.realigns = 0           # the session re-timed under the box (reported)
        self._session: LinkSession | None = None
        self._joined = False
        self._tempo = 0.0           # the session's tempo, last seen
        self._param = 0.0           # the tempo parameter that goes with it
        self._playing = False       # the session's transport, last seen
        self._transport = False     # the box's transport that goes with it

    def exchange(self, instrument: Instrument, now: float) -> None:
        """Before the loop applies changes: the session's news in, the box's out."""
        session = instrument.hardware.link
        if session is not self._session:                 # a new session (or none)
            if session is None and instrument.transport:
                instrument.engine.set_channel("transport", 1.0)   # a start it deferred plays now
            self._session, self._joined = session, False
            if session is not None:
                self._tempo, self._param = session.tempo, instrument.params.get("tempo")
                self.starts += 1
        if session is None:
            return
        tempo, param = session.tempo, instrument.params.get("tempo")
        if abs(tempo - self._tempo) > TEMPO_SAME:        # the session moved: so does the box
            self._tempo = tempo
            self._param = PARAMETERS.spec("tempo").clamp(tempo)   # (applied after this pass)
            instrument.loop.dispatch(SetParam("tempo", self._param, LINK, now))
        elif self._joined and abs(param - self._param) > 1e-9:    # the box moved: so does the session
            session.tempo = self._tempo = self._param = param
        if not self._joined:
            if not _settled(session, now):
                return
            self._join(instrument, session, now)
        if session.start_stop:
            self._transport_both_ways(instrument, session, now)

    def _join(self, instrument: Instrument, session: LinkSession, now: float) -> None:
        self._joined = True
        if session.start_stop and instrument.transport:
            if session.peers > 0 and not session.playing:
                instrument.loop.dispatch(Action("stop", 0, LINK, now))
            elif session.peers == 0:
                session.start_playing(_lead(instrument))
        self._playing, self._transport = session.playing, instrument.transport

    def _transport_both_ways(self, instrument: Instrument, session: LinkSession, now: float) -> None:
        playing = session.playing
        if playing != self._playing:                     # started or stopped in the session
            self._playing = self._transport = playing
            if playing != instrument.transport:
                instrument.loop.dispatch(Action("start" if playing else "stop", 0, LINK, now))
            if playing:
                self.starts += 1                         # on the session's next bar
        elif instrument.transport != self._transport:    # ... or on the box
            self._transport = self._playing = instrument.transport
            if instrument.transport:
                session.start_playing(_lead(instrument))
                self.starts += 1
            else:
                session.stop_playing()

    def steer(self, instrument: Instrument, now: float) -> None:
        session = instrument.hardware.link
        if session is None:
            self.lock.idle(instrument)
            return
        if not self._joined:
            return                      # the box waits, silent, for the session it may be joining
        line = session.timeline()
        self.lock.steer(instrument, now, line, self.starts)
        error = self.lock.error_ms
        if error is not None and abs(error) / 1000 > REALIGN * line.period:
            self.starts += 1                             # the session was re-timed: meet its next bar
            self.realigns += 1


def _lead(instrument: Instrument) -> float:
    """How far ahead a start puts the session's beat 0, so the box can meet it."""
    return ALIGN_AHEAD + _heard_after(instrument) / instrument.layout.sample_rate + 0.01


def _settled(session: LinkSession, now: float) -> bool:
    """Joined a session, or waited long enough to know there is none."""
    return session.peers > 0 or now - session.opened_at >= JOIN_WAIT


def _heard_after(instrument: Instrument) -> int:
    return instrument.driver.heard_after if instrument.driver is not None else 0
