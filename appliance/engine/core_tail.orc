; core_tail.orc - compiled after the user's orchestra, so instr Master runs
; last in every k-cycle: after the voices and after the orchestra's Fx.
;
; Master applies the volume, a limiter with no lookahead (a lookahead limiter
; would delay the audio and move every onset), a soft clip that keeps every
; sample at or below -1 dBFS, and a guard that mutes a block which is not
; finite (a filter that blew up) instead of sending NaN to the sound card.

instr Master
  ilimit = ampdbfs(-1)           ; hard ceiling of the output
  ithreshold = ampdbfs(-4)       ; the limiter starts here
  irelease = exp(-ksmps / (0.25 * sr))   ; 250 ms release per k-cycle
  kgainEnv init 0
  ; the voices mix to about -32 dBFS RMS; +9.5 dB of make-up puts the factory
  ; volume (-6 dB) near -22 dBFS RMS with the loudest peaks at the limiter
  imakeup = 3
  kvolume = imakeup * ampdbfs(limit(SmoothChannel("volume", 0.02), -90, 0))
  ; DC and subsonics (a pulse wave's offset, filter drift) out: a causal
  ; one-pole filter with no delay, so no onset moves (dcblock2 would: it
  ; subtracts a moving average, delaying the signal by its length)
  aL = dcblock(gaDryL, 0.9995) * kvolume     ; one pole at 4 Hz
  aR = dcblock(gaDryR, 0.9995) * kvolume
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
