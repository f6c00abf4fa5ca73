"""Offline render: deterministic, never clipping, and what it writes."""

from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np

from appliance.engine.analysis import onsets, peak_dbfs, read_wav

LOUDEST = {"volume": 0, "density": 1, "lead": 1, "bass": 1, "pad": 1, "perc": 1,
           "velocity": 1, "brightness": 1, "reverb": 1, "echo": 1, "click": 1, "click_level": 1,
           "register": 84, "range": 36}


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "appliance", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_same_seed_and_settings_give_identical_files(tmp_path):
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    for out, seed in ((a, 7), (b, 7), (c, 8)):
        done = _cli("render", "--seconds", "6", "--out", str(out), "--seed", str(seed),
                    "--set", "density=0.8", "--set", "tempo=128")
        assert done.returncode == 0, done.stderr
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_scenario_renders_are_identical_too(render):
    scenario = ("[[event]]\nat = 1.0\nset = { density = 1.0, motion = 0.9 }\n"
                "[[event]]\nat = 2.5\nset = { tempo = 170, scale = 'phrygian', seed = 3 }\n")
    first = render(5, {"tempo": 100}, scenario=scenario)
    second = render(5, {"tempo": 100}, scenario=scenario)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.report["params"]["scale"] == "phrygian"


def test_output_is_24_bit_stereo_at_the_configured_rate(render):
    result = render(1, config="[audio]\nsample_rate = 44100\n")
    with wave.open(str(result.path)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (2, 3, 44100)
    assert len(result.audio) >= 44100


def test_never_clips_even_with_everything_at_full(render):
    result = render(12, LOUDEST)
    assert np.all(np.isfinite(result.audio))
    assert peak_dbfs(result.audio) <= -1.0
    assert result.report["dsp_faults"] == 0
    # and it is not silent: the limiter keeps it loud, not quiet
    assert peak_dbfs(result.audio) > -6.0


def test_default_sound_is_neither_silent_nor_clipping(render):
    result = render(10)
    level = 20 * np.log10(np.sqrt(np.mean(result.audio ** 2)))
    assert -40 < level < -10
    assert peak_dbfs(result.audio) <= -1.0
    assert result.report["notes"] > 20


def test_density_zero_is_silent_apart_from_the_click(render):
    silent = render(3, {"density": 0, "click": 0})
    assert np.max(np.abs(silent.audio)) == 0.0
    assert silent.report["notes"] == 0


def test_render_cli_reports_and_refuses_bad_values(tmp_path):
    report = tmp_path / "r.json"
    done = _cli("render", "--seconds", "1", "--out", str(tmp_path / "x.wav"), "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert report.exists()
    bad = _cli("render", "--seconds", "1", "--out", str(tmp_path / "y.wav"), "--set", "tempo=900")
    assert bad.returncode == 2
    assert "tempo must be within 20..300 BPM, got 900" in bad.stderr
    assert not (tmp_path / "y.wav").exists()
    audio, _ = read_wav(tmp_path / "x.wav")
    assert len(audio) >= 48000


RINGING = {"density": 1, "length": 8, "pad": 1, "reverb": 1, "echo": 1, "volume": 0, "tempo": 120}


def _dbfs(signal) -> float:
    rms = float(np.sqrt(np.mean(np.square(signal)))) if signal.size else 0.0
    return -np.inf if rms == 0 else 20 * np.log10(rms)


def test_a_panic_silences_voices_and_tails_within_50_ms_without_a_click(render):
    panic = render(4, RINGING, scenario="[[event]]\nat = 2.0\ntransport = 'panic'\n")
    stop = render(4, RINGING, scenario="[[event]]\nat = 2.0\ntransport = 'stop'\n")
    sr = panic.sample_rate
    at = 2 * sr
    assert _dbfs(stop.audio[at + sr // 20:]) > -60                 # a musical stop rings on ...
    assert _dbfs(panic.audio[at + sr // 20:]) < -80                 # ... a panic is silent 50 ms later
    assert np.max(np.abs(panic.audio[at + sr // 20:])) < 10 ** (-80 / 20)
    # the fade is no steeper than the music itself: no click
    steps = np.abs(np.diff(panic.audio, axis=0))
    assert steps[at:at + sr // 20].max() <= steps[at - sr // 2:at].max()
    assert panic.report["transport"] == "stopped"


def test_after_a_panic_start_plays_again(render):
    result = render(4, {**RINGING, "reverb": 0, "echo": 0},
                    scenario="[[event]]\nat = 1.0\ntransport = 'panic'\n[[event]]\nat = 2.0\ntransport = 'start'\n")
    sr = result.sample_rate
    assert _dbfs(result.audio[int(1.05 * sr):int(1.9 * sr)]) < -80
    assert _dbfs(result.audio[int(3.0 * sr):]) > -40


def test_a_generator_knob_is_heard_on_every_step_beyond_the_guard(render):
    """Density 0 -> 1 at 3 s (120 BPM, sixteenths 125 ms apart): every step dispatched more than
    40 ms after the change plays, counting the control pass (5.3 ms offline) as the change's time."""
    from tests.conftest import PERC_ONLY, ideal_steps

    params = {**PERC_ONLY, "density": 0, "tempo": 120}
    for at in (3.0, 3.06, 3.1):
        result = render(4, params, scenario=f"[[event]]\nat = {at}\nset = {{ density = 1 }}\n")
        sr = result.sample_rate
        heard = onsets(result.audio)
        steps = ideal_steps(40, 120)
        dispatch = steps - 2 * 64                              # the clock dispatches 2 k-cycles ahead
        applied = at * sr + 256                                # the next control pass
        due = steps[dispatch > applied + 0.04 * sr]
        assert len(heard) and heard[0] <= round(due[0]) + 1, (at, heard[:2] / sr, due[0] / sr)


def test_the_volume_starts_where_it_is_set_no_pop(render):
    """The first click is as loud as the later ones, at any volume (Csound's port ignored a
    negative start value, so the volume began at 0 dB: at -60 dB the first click was 52 dB hot)."""
    from tests.conftest import CLICK_ONLY, ideal_beats

    for volume in (-50, -6):
        result = render(2.5, {**CLICK_ONLY, "volume": volume, "tempo": 120})
        beats = ideal_beats(4, 120).astype(int)
        peaks = [peak_dbfs(result.audio[b:b + 480]) for b in beats]
        assert max(peaks) - min(peaks) <= 1.0, (volume, peaks)


def test_the_volume_at_its_minimum_is_silence(render):
    result = render(2, {"density": 1, "click": 1, "volume": -60})
    assert np.max(np.abs(result.audio)) == 0.0                   # a mute, not -64 dBFS
    louder = render(2, {"density": 1, "click": 1, "volume": -54})
    assert -80 < peak_dbfs(louder.audio) < -40                    # and 6 dB above it, sound again


# -- a sound with no faults, at the extremes (issue: flat tops, held chords, cut note ends) --

def test_the_loudest_settings_never_flat_top_and_stay_below_minus_1_dbtp(render):
    """The limiter takes each block's (estimated) true peak before the block is heard:
    no flat top at the ceiling, true peak (4x oversampled) at most -1 dBTP."""
    from appliance.engine.analysis import flat_topped, true_peak_dbtp

    for params in (LOUDEST, {"tempo": 300, "volume": 0, "density": 1, "length": 8}, {"volume": 0}):
        result = render(8, {**params, "evolution": 0})
        assert flat_topped(result.audio) == 0, params
        assert true_peak_dbtp(result.audio) <= -1.0, params
        assert peak_dbfs(result.audio) > -4.0, params            # limited, not made quiet


def test_everything_off_lets_a_held_chord_go_within_its_release_at_any_tempo(render):
    """At 20 BPM with a chord every 8 bars a chord was held 86 s after everything was turned
    off; now a held chord counts its length in beats and lets go with its voice."""
    off = "{ density = 0, lead = 0, bass = 0, pad = 0, perc = 0 }"
    for tempo in (20, 300):
        result = render(10, {"tempo": tempo, "changes": 8, "pad": 1, "reverb": 0, "echo": 0, "evolution": 0},
                        scenario=f"[[event]]\nat = 4.0\nset = {off}\n")
        sr = result.sample_rate
        assert peak_dbfs(result.audio[int(3 * sr):int(4 * sr)]) > -40, tempo     # it played
        # the pad's release is 1.5 s; the last notes were sent a lookahead before
        assert peak_dbfs(result.audio[int(6 * sr):]) < -100, tempo


def test_everything_off_fades_every_voice_within_the_bar_at_300_bpm(render):
    """At 300 BPM a bar is 0.8 s: turned off, even a chord already ringing out its 1.5 s release
    (begun just before) is below -80 dBFS by the bar's end.  Off at 3.2 s (a chord had just
    begun its release) took 1.55 s before; 0.6-0.7 s now at any moment (3.0-5.2 s scanned)."""
    from appliance.engine.analysis import rms_dbfs

    off = "{ density = 0, lead = 0, bass = 0, pad = 0, perc = 0 }"
    result = render(7, {"tempo": 300, "volume": 0, "density": 1, "length": 8, "reverb": 0, "echo": 0},
                    scenario=f"[[event]]\nat = 3.2\nset = {off}\n")
    sr = result.sample_rate
    assert rms_dbfs(result.audio[int(2.2 * sr):int(3.2 * sr)]) > -30               # it played
    window = sr // 20
    after = result.audio[int(4.0 * sr):]
    assert max(rms_dbfs(after[i:i + window]) for i in range(0, len(after) - window, window)) < -80


def test_a_chord_follows_the_clock_when_the_tempo_changes(render):
    """A chord of 8 bars at 60 BPM (30.4 beats held, 30.4 s) whose tempo goes to 240 BPM after
    4 s ends after 4 + 26.4 / 4 = 10.6 s, its release (1.5 s) done by 12.1 s; the transport
    stops at 5 s so no other chord starts.  (Its length was fixed in seconds when it began.)"""
    result = render(14, {"tempo": 60, "changes": 8, "pad": 1, "lead": 0, "bass": 0, "perc": 0,
                         "reverb": 0, "echo": 0, "evolution": 0, "density": 1},
                    scenario="[[event]]\nat = 4.0\nset = { tempo = 240 }\n"
                             "[[event]]\nat = 5.0\ntransport = 'stop'\n")
    sr = result.sample_rate
    assert peak_dbfs(result.audio[int(9.0 * sr):int(10.0 * sr)]) > -40      # still held
    assert peak_dbfs(result.audio[int(12.3 * sr):]) < -90                    # gone, on the clock's beats


def test_note_ends_reach_zero_before_they_stop(render):
    """Every note of the bass (300 BPM) and every click ends on its envelope, not by being
    cut: where all is quiet (below -40 dBFS for 200 samples either side: a note's end, not an
    onset) the waveform never bends by more than -70 dBFS from one sample to the next (second
    difference).  Notes cut ~15 samples before their release ended stepped there by -61 dBFS
    (the bass, measured with the old VoiceDuration) and the click by -62 dBFS."""
    from numpy.lib.stride_tricks import sliding_window_view

    from tests.conftest import CLICK_ONLY

    for params in ({"tempo": 300, "density": 1, "lead": 0, "pad": 0, "perc": 0, "bass": 1, "reverb": 0,
                    "echo": 0, "evolution": 0, "hits": 3, "steps": 16},
                   {**CLICK_ONLY, "tempo": 300}):
        result = render(4, params)
        assert result.report["notes"] > 5 or params.get("click") == 1
        for x in result.audio.T:
            centre = np.arange(200, len(x) - 200)                             # 200 samples either side
            quiet = sliding_window_view(np.abs(x), 401).max(axis=1) < 10 ** (-40 / 20)
            bend = np.abs(x[centre + 1] - 2 * x[centre] + x[centre - 1])
            ends = bend[quiet]
            assert ends.size > 0 and ends.max() < 10 ** (-70 / 20), (params, 20 * np.log10(ends.max()))


def test_render_writes_the_notes_heard_as_a_midi_file(tmp_path):
    """`render --midi`: every percussion onset in the WAV has its note-on in the MIDI file at
    the same time (within a tick: 480 a beat), on the percussion's channel, with swing."""
    import mido

    from tests.conftest import PERC_ONLY

    wav, mid = tmp_path / "out.wav", tmp_path / "out.mid"
    sets = [f"--set={k}={v}" for k, v in {**PERC_ONLY, "tempo": 120, "swing": 60}.items()]
    subprocess.run([sys.executable, "-m", "appliance", "render", "--seconds", "4", "--out", str(wav),
                    "--midi", str(mid), *sets], check=True, capture_output=True)
    audio, rate = read_wav(wav)
    heard = onsets(audio) / rate
    midi = mido.MidiFile(str(mid))
    now, ons = 0.0, []
    for message in midi:                       # iterating a file gives seconds (through its tempo)
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            ons.append((now, message.channel))
    assert len(heard) >= 28 and len(ons) >= len(heard) - 1       # the last step may end the render
    tick = 60 / 120 / 480
    for at in heard:
        nearest = min(ons, key=lambda on: abs(on[0] - at))
        assert abs(nearest[0] - at) <= tick, (at, nearest)
        assert nearest[1] == 9                                     # channel 10: General MIDI drums
