"""Which audio output to use: a sound card if there is one, else simulation."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AudioChoice:
    backend: str
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
        return AudioChoice("null", "simulated hardware: Csound's null audio module, paced in real time")
    if configured != "auto":
        return AudioChoice(configured, None)
    if sound_card_present():
        return AudioChoice("alsa", None)
    return AudioChoice("null", "no sound card found: simulating with Csound's null audio module, "
                               "paced in real time")
