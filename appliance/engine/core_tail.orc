; core_tail.orc - compiled after the user's orchestra, so instr Master runs
; last in every k-cycle: after the voices and after the orchestra's Fx.
;
; Master applies the volume, a limiter with no lookahead (a lookahead limiter
; would delay the audio and move every onset), a soft clip that keeps every
; sample at or below -1 dBFS, and a guard that mutes a block which is not
; finite (a filter that blew up) instead of sending NaN to the sound card.
;
; Panic ("panic" channel changed): fade everything out over 10 ms (a ramp, no
; click), then turn every voice off and start the effects afresh with empty
; delay lines and reverb, so nothing rings on; half a second later the fade
; opens again on silence.

instr Master
  ilimit = ampdbfs(-1)           ; hard ceiling of the output
  ithreshold = ampdbfs(-4)       ; the limiter starts here
  irelease = exp(-ksmps / (0.25 * sr))   ; 250 ms release per k-cycle
  kgainEnv init 0
  ; the voices mix to about -32 dBFS RMS; +9.5 dB of make-up puts the factory
  ; volume (-6 dB) near -22 dBFS RMS with the loudest peaks at the limiter
  imakeup = 3
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
  ; instant attack (from the next block), exponential release
  kgainEnv = max(kpeak, kgainEnv * irelease)
  kgain = (kgainEnv > ithreshold ? ithreshold / kgainEnv : 1)
  again = interp(kgain)
  aL clip aL * again, 0, ilimit, 0.9
  aR clip aR * again, 0, ilimit, 0.9
  outs aL, aR
  clear gaDryL, gaDryR, gaReverbL, gaReverbR, gaEchoL, gaEchoR
endin
