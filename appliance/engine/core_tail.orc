; core_tail.orc - compiled after the user's orchestra, so instr Master runs
; last in every k-cycle: after the voices and after the orchestra's Fx.
;
; Master applies the volume, a true-peak limiter, a soft clip that keeps every
; sample at or below -1 dBFS (a last resort the limiter leaves idle), and a
; guard that mutes a block which is not finite (a filter that blew up) instead
; of sending NaN to the sound card.
;
; The limiter has no lookahead (it would delay the audio and move every onset):
; it looks at the whole of the block it is about to output instead.  Its peak
; is the block's true peak, estimated from the samples and the points halfway
; between them (a 4-point cubic interpolation: inter-sample peaks of a
; bright mix reach 0.5-1 dB above the samples), and a louder block gets its
; lower gain from its first sample (a step at a block boundary, before the
; transient), while a release glides.  Before, the gain fell only from the next
; block, so the clip flat-topped the first transient (7-44 samples at loud
; settings, -0.49 dBTP).
;
; Panic ("panic" channel changed): fade everything out over 10 ms (a ramp, no
; click), then turn every voice off and start the effects afresh with empty
; delay lines and reverb, so nothing rings on; half a second later the fade
; opens again on silence.

instr Master
  ilimit = ampdbfs(-1)           ; hard ceiling of the output
  ithreshold = ampdbfs(-3)       ; the limiter holds the (estimated) true peak near here
  iratio = 20                    ; above it: 20 dB more in, 1 dB more out (see kgain)
  irelease = exp(-ksmps / (0.25 * sr))   ; 250 ms release per k-cycle
  kgainEnv init 0
  ; the voices mix to about -32 dBFS RMS; the make-up puts the factory volume
  ; (-6 dB) near -16 LUFS integrated (bench/music.py)
  imakeup = 4.2
  ; the volume's last 6 dB fade to nothing, so its minimum (-60 dB) is silence, a mute
  kdb = limit(SmoothChannel("volume", 0.02), -60, 0)
  kvolume = imakeup * ampdbfs(kdb) * min(1, (kdb + 60) / 6)
  ; DC and subsonics (a pulse wave's offset, filter drift) out: a causal
  ; one-pole filter with no delay, so no onset moves (dcblock2 would: it
  ; subtracts a moving average, delaying the signal by its length)
  kpanicSeen init chnget:i("panic")
  kfade init 1
  kfading init 0
  kheld init 0
  kpanic = chnget:k("panic")
  if kpanic != kpanicSeen then
    kpanicSeen = kpanic
    kfading = 1
  endif
  if kfading == 1 then
    kfade = max(kfade - ksmps / (0.01 * sr), 0)
    if kfade == 0 then
      turnoff2 "Click", 0, 0
      turnoff2 "Lead", 0, 0
      turnoff2 "Bass", 0, 0
      turnoff2 "Pad", 0, 0
      turnoff2 "Perc", 0, 0
      turnoff2 "Fx", 0, 0
      event "i", "Fx", 0, -1
      kfading = 2
      kheld = 0
    endif
  elseif kfading == 2 then
    ; stay closed while the DC blocker's memory of the music dies away: it holds the
    ; music's DC offset (up to -9 dBFS here) and its pole is at 4 Hz, so 500 ms take
    ; even a full-scale offset below -100 dBFS; then open again over 10 ms
    kheld += ksmps
    kfading = (kheld >= 0.5 * sr ? 0 : 2)
  elseif kfade < 1 then
    kfade = min(kfade + ksmps / (0.01 * sr), 1)
  endif
  afade = interp(kfade)
  ; the fade goes in before the DC blocker too, so its input never stops abruptly
  aL = dcblock(gaDryL * afade, 0.9995) * kvolume * afade     ; one pole at 4 Hz
  aR = dcblock(gaDryR * afade, 0.9995) * kvolume * afade
  kpeak = max(max_k(aL, 1, 1), max_k(aR, 1, 1))
  if kpeak != kpeak || kpeak > 1000 then
    ; NaN or runaway: mute this block, count it, clear the state of the peak
    gkDspFaults += 1
    aL = 0
    aR = 0
    kpeak = 0
  endif
  ; the true peak: samples and the points halfway between them (cubic)
  aL1 delay1 aL
  aL2 delay1 aL1
  aL3 delay1 aL2
  aR1 delay1 aR
  aR2 delay1 aR1
  aR3 delay1 aR2
  amidL = (9 * (aL1 + aL2) - aL - aL3) / 16
  amidR = (9 * (aR1 + aR2) - aR - aR3) / 16
  ktrue = max(kpeak, max_k(amidL, 1, 1), max_k(amidR, 1, 1))
  ; attack within this block (from its first sample), exponential release
  kgainEnv = max(ktrue, kgainEnv * irelease)
  ; 20:1, not a wall: every limited block's peak mapped to the same value would put
  ; two equal samples wherever a peak straddles two blocks (a flat top)
  kgain = (kgainEnv > ithreshold ? (ithreshold / kgainEnv) ^ (1 - 1 / iratio) : 1)
  ; a falling gain steps down at the block's start; a rising one glides over it
  aglide interp kgain
  asteady upsamp kgain
  again min aglide, asteady
  aL clip aL * again, 0, ilimit, 0.9
  aR clip aR * again, 0, ilimit, 0.9
  outs aL, aR
  clear gaDryL, gaDryR, gaReverbL, gaReverbR, gaEchoL, gaEchoR
endin
