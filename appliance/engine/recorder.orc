; recorder.orc - compiled last: instr Recorder runs after everything that plays.
;
; Recorder: copies what Master sent to the output into a ring table, for
; Python to write to a WAV file from its own thread (engine/recorder.py), so
; no disk write happens on the audio thread.  Started only when recording.
;   p4 ring size in frames (a multiple of ksmps)
; Publishes the table number on "record_table" and the number of frames
; written so far on "record_frames" (set after the frames are in the table).
instr Recorder
  iframes = p4
  itable ftgen 0, 0, iframes * 2, -2, 0   ; kept until Csound is destroyed
  chnset itable, "record_table"
  kframes init 0
  aramp init 0
  kfirst init 1
  if kfirst == 1 then
    kn = 0
    while kn < ksmps do
      vaset kn, kn, aramp
      kn += 1
    od
    kfirst = 0
  endif
  aL, aR monitor
  aindex = (kframes % iframes) * 2 + aramp * 2
  tablew aL, aindex, itable
  tablew aR, aindex + 1, itable
  kframes += ksmps
  chnset kframes, "record_frames"
endin
