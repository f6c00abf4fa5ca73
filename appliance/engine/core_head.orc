; core_head.orc - the part of the orchestra that the instrument owns, compiled
; before the user's orchestra.  It holds the sample clock, the step buffer that
; Python fills ahead of the clock, and the buses that voices mix into.
;
; Python prepends the header (sr, ksmps, nchnls, 0dbfs) and these constants
; (see appliance/engine/orchestra.py):
;   giRingSize      slots in the step ring buffer
;   giMaxNotes      notes per step
;   giStepsPerBeat  steps per beat (4 = sixteenth notes)
;   giBeatsPerBar   beats per bar
;   giStartSample   sample of the first beat
;   giTempoMin, giTempoMax   tempo limits (BPM), the same as the parameter's
;
; Why the clock lives here: Csound's real-time event insertion either rounds
; onsets to a k-cycle or, with --sample-accurate, puts some exactly one k-cycle
; late (Csound 6.18).  So no onset is ever sent with a time.  The clock below
; computes each onset's exact sample itself and starts the voice one k-cycle
; early; the voice delays its output so that its first sample lands on the
; onset sample (opcode VoiceOut).

giNoteFields = 6                                 ; instr, pitch, velocity, gate (beats), pan, timbre
giFields = 2 + giMaxNotes * giNoteFields         ; per slot: stamp, note count, notes
giBarSteps = giStepsPerBeat * giBeatsPerBar
; step ring: Python writes step k into slot k % giRingSize with stamp k + 1
giSteps ftgen 0, 0, giRingSize * giFields, -2, 0
; what was played one bar ago, slot per step of the bar: the fill-in when
; Python has not delivered a step in time (see instr Clock)
giPlayed ftgen 0, 0, giBarSteps * giFields, -2, 0
giSine ftgen 0, 0, 16384, 10, 1

gkNextStep init 0      ; the next step the clock will dispatch
gkLateSteps init 0     ; steps played from the fill-in because Python was late
gkLateNotes init 0     ; notes that reached Csound after their step was played
gkNotes init 0         ; notes dispatched
gkDspFaults init 0     ; blocks muted because the mix was not finite

; the buses: voices add to them, instr Master clears them every cycle
gaDryL init 0
gaDryR init 0
gaReverbL init 0
gaReverbR init 0
gaEchoL init 0
gaEchoR init 0

; VoiceOut: place a voice's audio on its onset sample and mix it into the buses.
; A voice instance starts at the k-cycle boundary before its onset; idelay
; (p4 of every voice, ksmps <= idelay < 2*ksmps) is how many samples later the
; onset is.  delay's buffer is idelay samples long, so the voice's first sample
; comes out exactly on the onset sample.  idelay is never 0 (delay refuses 0).
opcode VoiceOut, 0, aaikk
  aL, aR, idelay, kreverb, kecho xin
  aL delay aL, idelay / sr
  aR delay aR, idelay / sr
  gaDryL += aL
  gaDryR += aR
  gaReverbL += aL * kreverb
  gaReverbR += aR * kreverb
  gaEchoL += aL * kecho
  gaEchoR += aR * kecho
endop

; SmoothChannel: a control channel smoothed over ihtime seconds (half-time),
; starting at the channel's current value.  Written out rather than port: a
; plain port glides up from 0 at every start, and port's initial value is
; ignored when it is negative (Csound 6.18), so a volume in dB started at
; 0 dB, a pop at every start.  The same one-pole filter as port.
opcode SmoothChannel, k, Si
  Sname, ihtime xin
  icoef = 1 - exp(-log(2) * ksmps / (ihtime * sr))
  kvalue init chnget:i(Sname)
  kvalue += (chnget:k(Sname) - kvalue) * icoef
  xout kvalue
endop

; VoiceDuration: the instance length a voice needs (seconds): its onset delay,
; its gate and its release tail, and one k-cycle more.  Csound ends an instance
; on a k-cycle boundary, and the release's last samples are still in VoiceOut's
; delay line then: without the extra cycle a note's end was cut before its
; envelope reached zero (a step of -56 dBFS measured at 300 BPM).
opcode VoiceDuration, i, iii
  idelay, igate, irelease xin
  xout (idelay + ksmps) / sr + igate + irelease
endop

; NoteHeld: 1 while a note should sound, 0 from when its gate has passed, -1 from
; when it was turned off.  The gate (seconds at the tempo the note began with) is
; counted in the clock's beats as they come, so a chord held for bars follows the
; tempo; and a note lets go at once when its voice (channel Svoice) or the density
; is turned to 0 (HeldEnvelope then fades it within a bar, at any tempo).  Once
; let go it stays so.
opcode NoteHeld, k, iS
  igate, Svoice xin
  itempo = chnget:i("clock_tempo")
  itempo = (itempo > 0 ? itempo : chnget:i("tempo"))
  ibeats = igate * itempo / 60
  kbeats init 0
  kheld init 1
  ktempo = chnget:k("clock_tempo")
  kbeats += (ktempo > 0 ? ktempo : itempo) / 60 * ksmps / sr
  ; turned off also while it rings out after its gate: a release of 1.5 s begun just
  ; before "everything off" would outlast the bar at a fast tempo
  if kheld >= 0 && (chnget:k(Svoice) <= 0 || chnget:k("density") <= 0) then
    kheld = -1
  elseif kheld == 1 && kbeats >= ibeats then
    kheld = 0
  endif
  xout kheld
endop

; HeldEnvelope: attack to 1, decay to isustain, and from when kheld turns 0 a
; linear release to exactly 0 over irelease seconds (turned off, kheld -1: over
; at most half a bar at the clock's tempo, so with the master's DC blocker's
; memory it is silent within the bar even at 300 BPM, where a bar is 0.8 s);
; kover turns 1 once VoiceOut's
; delay line has played that out: the voice then turns itself off (turnoff inside
; a UDO crashes Csound 6.18).  For voices whose length NoteHeld decides: set p3
; long (VoiceDuration with a long gate) and turn off on kover.
opcode HeldEnvelope, ak, iiiik
  iattack, idecay, isustain, irelease, kheld xin
  kenv init 0
  kstage init 0                  ; 0 attack, 1 decay and sustain, 2 release, 3 done
  kdone init 0
  istep = ksmps / sr
  kquick init 0
  if (kheld <= 0 && kstage < 2) || (kheld < 0 && kstage == 2 && kquick == 0) then
    ktempo = chnget:k("clock_tempo")
    kbar = giBeatsPerBar * 60 / (ktempo > 0 ? ktempo : chnget:k("tempo"))
    krelease = (kheld < 0 ? min(irelease, 0.5 * kbar) : irelease)
    ; a release already under way goes on from where it is, only faster
    kfall = max(kenv * istep / krelease, (kstage == 2 ? kfall : 0))
    kquick = (kheld < 0 ? 1 : 0)
    kstage = 2
  endif
  if kstage == 0 then
    kenv = min(kenv + istep / iattack, 1)
    kstage = (kenv >= 1 ? 1 : 0)
  elseif kstage == 1 then
    kenv = max(kenv - (1 - isustain) * istep / idecay, isustain)
  elseif kstage == 2 then
    kenv = max(kenv - kfall, 0)
    kstage = (kenv <= 0 ? 3 : 2)
  else
    kdone += 1                  ; the delay line (< 2 k-cycles) plays out
  endif
  xout interp(kenv), (kdone > 2 ? 1 : 0)
endop

; StepWrite: Python's way to hand the clock the notes of one step, ahead of
; time.  Init-only, so it runs at the start of a k-cycle, before the clock.
;   p4 step index, p5 note count, p6... notes (giNoteFields values each)
instr StepWrite
  istep = p4
  icount = min(p5, giMaxNotes)
  if istep < i(gkNextStep) then
    ; too late: the clock has played this step from the fill-in already
    gkLateNotes += icount
    turnoff
  endif
  ibase = (istep % giRingSize) * giFields
  ; invalidate the slot before filling it, then stamp it
  tabw_i 0, ibase, giSteps
  tabw_i icount, ibase + 1, giSteps
  ifield = 0
  while ifield < icount * giNoteFields do
    tabw_i p(6 + ifield), ibase + 2 + ifield, giSteps
    ifield += 1
  od
  tabw_i istep + 1, ibase, giSteps
  turnoff
endin

; DispatchNotes: dispatch the notes of the step stored at kbase in giPlayed;
; returns how many notes it dispatched
opcode DispatchNotes, k, kkk
  kbase, kdelay, kbeatSeconds xin
  kcount = tab:k(kbase + 1, giPlayed)
  knote = 0
  while knote < kcount do
    kfield = kbase + 2 + knote * giNoteFields
    kinstr = tab:k(kfield, giPlayed)
    kpitch = tab:k(kfield + 1, giPlayed)
    kvelocity = tab:k(kfield + 2, giPlayed)
    kgate = tab:k(kfield + 3, giPlayed) * kbeatSeconds
    kpan = tab:k(kfield + 4, giPlayed)
    ktimbre = tab:k(kfield + 5, giPlayed)
    if kinstr > 0 then
      event "i", kinstr, 0, 1, kdelay, kpitch, kvelocity, kgate, kpan, ktimbre
    endif
    knote += 1
  od
  xout kcount
endop

; Clock: the instrument's sample clock.  Started once, at time 0, and runs for
; the whole performance.
;
; Each k-cycle c covers samples [c*ksmps, (c+1)*ksmps).  In cycle c the clock
; dispatches every step whose onset falls in cycle c+2: the voice event it
; fires starts in cycle c+1, and its output is delayed by
; onset - (c+1)*ksmps samples, which is in [ksmps, 2*ksmps).
;
; Positions are kept in samples as doubles and integrated beat by beat, so
; there is no drift; each onset is the nearest sample to its ideal position.
; Tempo and swing are read when a beat is dispatched and hold for that whole
; beat: a tempo change takes effect from the next beat.
;
; (No line continuations in these files: Csound 6.18 miscounts the lines
; after a backslash continuation, which would shift the line numbers of
; compile errors in the user's orchestra.)
;
; Fill-in rule: if the slot of a step does not hold that step (Python fell
; behind by more than its lookahead), the clock plays what it played at the
; same step one bar earlier, so the music loops its last bar instead of going
; silent, and nothing is ever played late or bunched.
instr Clock
  kcycle init 0
  kpos init giStartSample        ; exact position of the next step (samples)
  kbeatStart init giStartSample
  kbeatLen init 60 * sr / limit(chnget:i("tempo"), giTempoMin, giTempoMax)
  kswing init 0.5
  kstopped init 0
  krestarts init 0
  kwindow = (kcycle + 2) * ksmps
  ; the transport: "transport" 1 plays, 0 stops (notes already sounding ring
  ; out).  Playing again resumes on the next beat, or with
  ; "transport_from_bar" = 1 on the next bar, at the earliest sample the
  ; clock can place (the start of the window).
  ; "transport_restart" (a count) restarts the clock at sample "transport_at" on
  ; beat "transport_at_beat" of a bar: an external clock's beat (MIDI Start, a
  ; Link bar).  It is checked before the plain start, so a start written with
  ; a restart waits, silent, for that sample instead of playing at once.
  krestartSeen init chnget:i("transport_restart")
  if chnget:k("transport") < 0.5 then
    kstopped = 1
  elseif chnget:k("transport_restart") != krestartSeen && chnget:k("transport_at") >= kwindow then
    krestartSeen = chnget:k("transport_restart")
    kstopped = 0
    gkNextStep = ceil(gkNextStep / giBarSteps) * giBarSteps + chnget:k("transport_at_beat") * giStepsPerBeat
    kpos = chnget:k("transport_at")
    krestarts += 1
  elseif kstopped == 1 then
    kstopped = 0
    kalign = (chnget:k("transport_from_bar") >= 0.5 ? giBarSteps : giStepsPerBeat)
    gkNextStep = ceil(gkNextStep / kalign) * kalign
    kpos = kwindow
    krestarts += 1
  endif
  while kstopped == 0 && kpos < kwindow + ksmps do
    kinBeat = gkNextStep % giStepsPerBeat
    if kinBeat == 0 then
      kbeatStart = kpos
      ; an external clock (MIDI clock) steers through "sync_tempo": the exact tempo
      ; of this beat, nudged to land the next beat on the master's (0: not synced)
      ksync = chnget:k("sync_tempo")
      kbeatLen = 60 * sr / limit((ksync > 0 ? ksync : chnget:k("tempo")), giTempoMin, giTempoMax)
      kswing = limit(chnget:k("swing"), 50, 75) / 100
    endif
    konset = floor(kpos + 0.5)
    kdelay = konset - (kcycle + 1) * ksmps
    if kinBeat == 0 then
      kbeat = floor(gkNextStep / giStepsPerBeat)
      if chnget:k("click") >= 0.5 then
        kaccent = (kbeat % giBeatsPerBar == 0 ? 1 : 0)
        event "i", "Click", 0, 1, kdelay, kaccent, chnget:k("click_level")
      endif
      chnset kbeat + 1, "clock_beats"
      chnset kpos, "clock_beat_sample"
      chnset kbeatLen, "clock_beat_length"
      chnset kswing, "clock_beat_swing"
    endif
    ; take the step from the ring if Python delivered it, else keep last bar's
    kplayed = (gkNextStep % giBarSteps) * giFields
    kslot = (gkNextStep % giRingSize) * giFields
    if tab:k(kslot, giSteps) == gkNextStep + 1 then
      kfield = 0
      while kfield < giFields do
        tabw tab:k(kslot + kfield, giSteps), kplayed + kfield, giPlayed
        kfield += 1
      od
    else
      gkLateSteps += 1
    endif
    gkNotes += DispatchNotes(kplayed, kdelay, kbeatLen / sr)
    ; advance to the next step: swing delays the second step of each pair
    gkNextStep += 1
    kinBeat = gkNextStep % giStepsPerBeat
    if kinBeat == 0 then
      kpos = kbeatStart + kbeatLen
    else
      kpair = 2 * floor(kinBeat / 2) + (kinBeat % 2) * 2 * kswing
      kpos = kbeatStart + kpair * kbeatLen / giStepsPerBeat
    endif
  od
  kcycle += 1
  chnset gkNextStep, "clock_step"
  chnset kpos - 2 * ksmps, "clock_step_dispatch"   ; the sample at which that step is dispatched
  chnset 60 * sr / kbeatLen, "clock_tempo"
  chnset 1 - kstopped, "clock_running"
  chnset krestarts, "clock_restarts"
  chnset gkLateSteps, "late_steps"
  chnset gkLateNotes, "late_notes"
  chnset gkNotes, "notes"
  chnset gkDspFaults, "dsp_faults"
  chnset kcycle * ksmps, "time_samples"
endin
