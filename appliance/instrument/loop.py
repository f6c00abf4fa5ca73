"""The control loop: the only code that changes parameters, mappings, transport or the engine.

Each pass plays due scenario events, takes every command and input event
from the inbox, applies the parameter changes (coalesced per parameter),
tops up the clock's step buffer and drains Csound's messages.  Nothing in
it decides when a note sounds: the clock in Csound does.

It runs only when needed: when the inbox wakes it, when the sequencer next
has a step to send, when a long press or a periodic job (systemd's
watchdog, saving the last state) is due.  The sequencer composes
`lookahead` plus one step ahead, and the loop sleeps at most one step, so
every step still reaches Csound at least `lookahead` before it sounds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.controls.inbox import Action, Command, Learn, SetParam, Unlearn
from appliance.errors import ApplianceError, ParamError
from appliance.instrument.bar_change import BarChanges
from appliance.params import PARAMETERS

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument

log = logging.getLogger("appliance")

MAX_SLEEP = 0.5          # the loop looks at the engine (has Csound stopped?) at least this often
CLOCK_OUT_SECONDS = 0.005  # with MIDI clock out, the audio clock is observed this often (its 1 s minimum)
WAKE_SLACK = 0.05        # a wake-up this late still leaves every step `lookahead` ahead

Job = Callable[[float], float]   # runs now; returns when it wants to run next (monotonic seconds)


class ControlLoop:
    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.handlers: dict[type, Callable[[Any], Any]] = {
            SetParam: self._set, Action: self._act, Learn: self._learn, Unlearn: self._unlearn}
        self.actions: dict[str, Callable[[Action], None]] = {
            "start": self._transport, "continue": self._transport, "stop": self._transport,
            "start_stop": self._transport, "panic": self._panic, "click": self._click, "tap_tempo": self._tap}
        self.jobs: list[tuple[Job, float]] = []
        self.wakes = 0
        self._pending: dict[str, SetParam] = {}
        self._replies: dict[str, list] = {}
        self._step_seconds = MAX_SLEEP
        self._next_scan = 0.0
        # measurement hook (benchmarks): called with each change as it reaches Csound
        self.on_applied: Callable[[SetParam, float], None] | None = None
        self.bar_changes = BarChanges(instrument, self.dispatch)      # scenes, TEMP
        # told every change applied, whatever its source (OSC's feedback to its clients)
        self.feedback: list[Callable[[str, float], None]] = []
        self.actions["temp"] = self.bar_changes.temp

    # -- what the loop can be asked -------------------------------------------------

    def handle(self, kind: type, handler: Callable[[Any], Any]) -> None:
        """Let `handler` answer commands of this type (the service adds reload and presets)."""
        self.handlers[kind] = handler

    def add_job(self, job: Job) -> None:
        """Run job(now) from the loop whenever the time it last returned has come."""
        self.jobs.append((job, 0.0))

    # -- one pass -----------------------------------------------------------------------

    def tick(self) -> None:
        instrument = self.instrument
        self.wakes += 1
        now = instrument.inbox.clock()
        instrument.player.play(instrument.elapsed())
        for command in instrument.inbox.take_commands():
            self.dispatch(command)
        self._inputs(now)
        if instrument.threaded:
            instrument.link_sync.exchange(instrument, now)
        self._apply()
        if self.bar_changes.pending is not None:
            self.bar_changes.tick(instrument.clock_step())
            self._apply()                # what a bar line just brought, before composing on
        self._fill()
        if instrument.threaded:
            instrument.watch_audio(now)
            instrument.feed_clock_out(now)
            instrument.midi_sync.steer(instrument, now)
            instrument.link_sync.steer(instrument, now)
        else:
            instrument.record_notes()
        self._run_jobs()
        instrument.log_messages()

    def dispatch(self, command: Command) -> None:
        reply = command.reply
        try:
            result = self.handlers[type(command)](command)
        except Exception as exc:
            if not isinstance(exc, ApplianceError):    # a bug must not stop the sound: say so, go on
                log.exception("%s failed", type(command).__name__)
                exc = ApplianceError(f"internal error: {exc}")
            if reply is None:
                self.instrument.error(f"{_source(command)}: {exc}")
            else:
                reply.fail(exc)
            return
        if reply is not None and not isinstance(command, SetParam):   # a set answers once applied
            reply.set(result)

    def next_wake(self, now: float) -> float:
        """When the loop is next needed (monotonic seconds), if nothing wakes it sooner."""
        wake = now + min(self._step_seconds, MAX_SLEEP)
        instrument = self.instrument
        hardware = instrument.hardware
        if hardware.clock_out is not None or hardware.controls.follow_clock or hardware.link is not None:
            wake = min(wake, now + CLOCK_OUT_SECONDS)      # all need the audio clock observed often
        held = instrument.hardware.controls.next_deadline()
        if held is not None:
            wake = min(wake, held)
        return min([wake, *(due for _, due in self.jobs)])

    # -- inputs ----------------------------------------------------------------------------

    def _inputs(self, now: float) -> None:
        instrument = self.instrument
        hardware = instrument.hardware
        if not instrument.threaded:
            # offline, the loop does what the input threads do in real time
            if now >= self._next_scan:
                hardware.midi.scan()
                self._next_scan = now + instrument.config.midi.scan_seconds
            hardware.midi.poll()
        for device in hardware.lost_devices():
            hardware.controls.release_device(device)
        value_of = instrument.params.get
        effects = hardware.controls.handle(instrument.inbox.take_events(), value_of)
        effects += hardware.controls.poll(now, value_of)
        for effect in effects:
            self.dispatch(effect)

    # -- commands ----------------------------------------------------------------------------

    def _set(self, command: SetParam) -> None:
        spec = PARAMETERS.spec(command.name)
        value = spec.validate(command.value)
        self._pending[spec.name] = SetParam(spec.name, value, command.source, command.time)
        if command.reply is not None:
            self._replies.setdefault(spec.name, []).append(command.reply)

    def _act(self, action: Action) -> None:
        log.info("%s (%s)", action.name, action.source)
        carry_out = self.actions.get(action.name)
        if carry_out is None:
            raise ApplianceError(f"{action.name}: nothing here carries it out "
                                 "(presets live in the service's state directory)")
        carry_out(action)

    def _transport(self, action: Action) -> None:
        instrument = self.instrument
        play = action.name != "stop" and not (action.name == "start_stop" and instrument.transport)
        instrument.set_transport(play, from_bar=action.name in ("start", "start_stop"))

    def _panic(self, action: Action) -> None:
        self.instrument.panic()

    def _tap(self, action: Action) -> None:
        """Tap tempo from OSC, the page or the socket: the same taps as a button's or a pad's."""
        tempo = self.instrument.hardware.controls.tap.tap(action.time)
        if tempo is not None:
            self._set(SetParam("tempo", PARAMETERS.spec("tempo").clamp(tempo), f"tap tempo ({action.source})"))

    def _click(self, action: Action) -> None:
        self._set(SetParam("click", 1.0 - self.instrument.params.get("click"), action.source))

    def _learn(self, command: Learn) -> dict[str, str | None]:
        router = self.instrument.hardware.router
        previous, router.learning = router.learning, command.name
        return {"learning": command.name, "was": previous}

    def _unlearn(self, command: Unlearn) -> int:
        return self.instrument.hardware.controls.unlearn(command.name)

    # -- applying --------------------------------------------------------------------------

    def _apply(self) -> None:
        if not self._pending:
            return
        instrument = self.instrument
        pending, self._pending = self._pending, {}
        replies, self._replies = self._replies, {}
        recompose = False
        for change in pending.values():
            try:
                value = instrument.params.set(change.name, change.value)
            except ParamError as exc:           # not expected: values are checked when they arrive
                for reply in replies.get(change.name, []):
                    reply.fail(exc)
                instrument.error(f"{change.source}: {exc}")
                continue
            spec = PARAMETERS.spec(change.name)
            recompose |= spec.group == "generator"
            instrument.engine.set_channel(spec.name, value)     # held notes read the generator's too
            if self.on_applied is not None:
                self.on_applied(change, time.monotonic())
            instrument.hardware.feedback(spec.name, value)
            for listener in self.feedback:
                listener(spec.name, value)
            for reply in replies.get(change.name, []):
                reply.set(value)
            log.debug("%s = %s (%s)", spec.name, spec.format(value), change.source)
        if recompose:
            instrument.sequencer.recompose(instrument.clock_step(), instrument.tempo_bound(),
                                           instrument.next_step_due())

    def _fill(self) -> None:
        instrument = self.instrument
        params = instrument.params.snapshot()
        clock_step = instrument.clock_step()
        tempo = instrument.tempo_bound(params)
        if instrument.clock_restarted():
            instrument.sequencer.skip_to(clock_step, params)
        margin = 0.0
        if instrument.threaded:
            self._step_seconds = 60.0 / (tempo * instrument.layout.steps_per_beat)
            margin = min(self._step_seconds, MAX_SLEEP) + WAKE_SLACK
        instrument.sequencer.fill(clock_step, params, tempo, margin, change=self.bar_changes.params_from(params))

    def _run_jobs(self) -> None:
        if not self.jobs:
            return
        now = time.monotonic()
        self.jobs = [(job, job(now) if now >= due else due) for job, due in self.jobs]


def _source(command: Command) -> str:
    return getattr(command, "source", type(command).__name__.lower())
