; default.orc - the instrument's factory sound.
;
; An orchestra defines the voices the generator plays and one effects
; instrument.  The contract (checked when the orchestra is loaded):
;   instr Click, Lead, Bass, Pad, Perc   the voices
;   instr Fx                             effects, always on, defined after the voices
; Do not set sr, ksmps, nchnls or 0dbfs: the instrument sets them.
; Avoid backslash line continuations: Csound 6.18 then reports compile errors
; on later lines one line too far down.
;
; Every voice receives
;   p4 onset delay in samples (pass it to VoiceOut and VoiceDuration)
;   p5 pitch (MIDI note number, may be fractional)
;   p6 velocity 0..1
;   p7 gate in seconds
;   p8 pan -1..1
;   p9 timbre 0..1 (how the generator varies the sound from note to note)
; and must set its own length with p3 = VoiceDuration(p4, gate, release), then
; send its audio through VoiceOut, which puts its first sample on the onset.
; Click receives p5 = 1 on the first beat of a bar (else 0), p6 = level 0..1.
;
; Sound parameters arrive on control channels: brightness, reverb, echo (0..1);
; read a knob that can move during a note with SmoothChannel("name", seconds).

; Equal-power pan of a mono signal.
opcode Pan, aa, ak
  asig, kpan xin
  kangle = (limit(kpan, -1, 1) + 1) * $M_PI / 4
  xout asig * cos(kangle), asig * sin(kangle)
endop

; Metronome click: a cosine burst, so its first sample is at full level; its
; exponential decay is shifted down to end at exactly 0 (no step at its end).
instr Click
  idelay = p4
  iaccent = p5
  ilevel = limit(p6, 0, 1)
  idecay = 0.03
  p3 = VoiceDuration(idelay, idecay, 0)
  ifreq = (iaccent == 1 ? 2000 : 1400)
  aexp expon 1, idecay, 0.001
  aenv = limit((aexp - 0.001) / 0.999, 0, 1)
  asig oscili 0.25 * ilevel * aenv, ifreq, giSine, 0.25
  VoiceOut asig, asig, idelay, 0, 0
endin

; Lead: two detuned saws and a square through a resonant low-pass, with a
; filter envelope that opens with velocity and timbre.
instr Lead
  idelay = p4
  ifreq = cpsmidinn(p5)
  ivel = limit(p6, 0, 1)
  igate = max(p7, 0.02)
  ipan = p8
  itimbre = limit(p9, 0, 1)
  irelease = 0.25
  p3 = VoiceDuration(idelay, igate, irelease)
  kbright = SmoothChannel("brightness", 0.05)
  aamp linseg 0, 0.004, 1, igate - 0.004, 0.7, irelease, 0
  kfenv expseg 1, 0.25 + 0.5 * itimbre, 0.6, 1, 0.6
  a1 vco2 0.3, ifreq * 1.003
  a2 vco2 0.3, ifreq * 0.997
  a3 vco2 0.2, ifreq * 0.5, 2, 0.5
  kcut = limit(ifreq * (3 + 14 * kbright * (0.4 + 0.6 * ivel)) * kfenv, 40, 16000)
  asig moogladder2 a1 + a2 + a3, kcut, 0.2 + 0.3 * itimbre
  asig *= aamp * (0.3 + 0.5 * ivel)
  aL, aR Pan asig, ipan
  VoiceOut aL, aR, idelay, 0.5 * chnget:k("reverb"), 0.6 * chnget:k("echo")
endin

; Bass: saw plus a sine on the fundamental, plucked filter (no sub-octave:
; small speakers cannot play it and it would eat the headroom).
instr Bass
  idelay = p4
  ifreq = cpsmidinn(p5)
  ivel = limit(p6, 0, 1)
  igate = max(p7, 0.02)
  irelease = 0.08
  p3 = VoiceDuration(idelay, igate, irelease)
  kbright = SmoothChannel("brightness", 0.05)
  aamp linseg 0, 0.003, 1, igate - 0.003, 0.8, irelease, 0
  kfenv expseg 1, 0.15 + 0.2 * p9, 0.15, 1, 0.15
  asaw vco2 0.5, ifreq
  asine oscili 0.5, ifreq, giSine
  kcut = limit(ifreq * (3 + 16 * kbright * ivel) * kfenv, 30, 8000)
  asig moogladder2 asaw, kcut, 0.3
  asig = (asig + asine * 0.35) * aamp * (0.16 + 0.2 * ivel)
  VoiceOut asig, asig, idelay, 0.08 * chnget:k("reverb"), 0
endin

; Pad: three detuned saws per note, slow swell, wide and wet.  A chord is held
; for bars: it counts its length in the clock's beats (so it follows the tempo)
; and lets go when the pad or the density is turned to 0 (NoteHeld).
instr Pad
  idelay = p4
  ifreq = cpsmidinn(p5)
  ivel = limit(p6, 0, 1)
  igate = max(p7, 0.2)
  ipan = p8
  iattack = min(0.6, igate * 0.5)
  irelease = 1.5
  ; long enough for a tempo that falls to a fifteenth (300 to 20 BPM); NoteHeld ends it sooner
  p3 = VoiceDuration(idelay, igate * 15, irelease)
  kheld NoteHeld igate, "pad"
  aamp, kover HeldEnvelope iattack, igate - iattack, 0.8, irelease, kheld
  if kover == 1 then
    turnoff
  endif
  kbright = SmoothChannel("brightness", 0.05)
  a1 vco2 0.2, ifreq * 1.005
  a2 vco2 0.2, ifreq * 0.995
  a3 vco2 0.2, ifreq * 2.002, 2, 0.3
  klfo lfo 0.3, 0.2 + 0.3 * p9
  kcut = limit(ifreq * (1 + 6 * kbright) * (1 + klfo), 60, 9000)
  asig butterlp a1 + a2 + a3, kcut
  asig *= aamp * 0.16 * (0.5 + 0.5 * ivel)
  aL, aR Pan asig, ipan
  VoiceOut aL, aR, idelay, 0.9 * chnget:k("reverb"), 0.3 * chnget:k("echo")
endin

; Perc: a tick and a burst of high-passed noise, starting at full level and
; ending at exactly zero (12..42 ms) before the next sixteenth, even at 300 BPM.
instr Perc
  idelay = p4
  ivel = limit(p6, 0, 1)
  idecay = 0.012 + 0.03 * limit(p9, 0, 1)
  p3 = VoiceDuration(idelay, idecay, 0)
  kbright = chnget:k("brightness")
  aenv linseg 1, idecay, 0
  anoise rand 1, 0.5, 1
  anoise buthp anoise, 5000 + 4000 * kbright
  atick mpulse 1, 0
  asig = (atick * 0.6 + anoise * 0.5) * aenv * 0.5 * ivel
  aL, aR Pan asig, p8
  VoiceOut aL, aR, idelay, 0.15 * chnget:k("reverb"), 0.2 * chnget:k("echo")
endin

; Fx: reverb and a tempo-synced ping-pong echo (dotted eighth), returned to
; the dry bus before the instrument's master stage.  One delay line: the tap
; at t goes left, the tap at 2t goes right and is fed back, so the repeats
; alternate sides and the feedback path has no block delay.
instr Fx
  kbright = SmoothChannel("brightness", 0.1)
  ; the clock's tempo (it changes on beats); the tempo parameter before the first beat
  ktempo = chnget:k("clock_tempo")
  ktempo = (ktempo > 0 ? ktempo : chnget:k("tempo"))
  ktime = port(0.75 * 60 / ktempo, 0.3, 0.75 * 60 / chnget:i("tempo"))
  abuf delayr 4
  aechoL deltap3 ktime
  aechoR deltap3 2 * ktime
  delayw (gaEchoL + gaEchoR) * 0.5 + aechoR * 0.5
  arevInL = gaReverbL + aechoL * 0.2
  arevInR = gaReverbR + aechoR * 0.2
  arevL, arevR reverbsc arevInL, arevInR, 0.86, 4000 + 8000 * kbright
  gaDryL += aechoL * 0.6 + arevL * 0.6
  gaDryR += aechoR * 0.6 + arevR * 0.6
endin
