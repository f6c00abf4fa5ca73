"""Which audio output to use: a sound card if there is one, else simulation."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AudioChoice:
    backend: str
    simulated: bool      # simulated-hardware mode: null audio, simulated MIDI and GPIO
    reason: str | None   # said to the user when the choice was not what the config asked


def sound_card_present() -> bool:
    """True if ALSA lists a playback device."""
    try:
        cards = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return "no soundcards" not in cards and bool(glob.glob("/dev/snd/pcmC*D*p"))


def choose(configured: str, simulate: bool) -> AudioChoice:
    if simulate:
        return AudioChoice("null", True, "simulated hardware: Csound's null audio module (paced in "
                                         "real time), simulated MIDI and GPIO")
    if configured != "auto":
        return AudioChoice(configured, False, None)
    if sound_card_present():
        return AudioChoice("alsa", False, None)
    return AudioChoice("null", True, "no sound card found: simulated hardware (Csound's null audio "
                                     "module, paced in real time; simulated MIDI and GPIO)")
