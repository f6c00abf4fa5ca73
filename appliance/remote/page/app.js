// The instrument's page.  Everything changes through one websocket, as the JSON commands the
// control socket takes (remote/commands.py), one at a time: a fader dragged faster than the box
// answers sends its latest position, never a backlog.  Names and text from the box are put in
// with textContent only, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let ws = null;
let nextId = 1;
let inflight = null;                 // the command sent and not answered yet
const queue = [];                    // commands waiting (buttons, forms)
const latestSet = new Map();         // parameter -> its latest "set" (a fader's newest position)
const controls = new Map();          // parameter -> {spec, range, field, select}
let editing = null;                  // the parameter a finger is on: the box's pushes leave it alone
let editingUntil = 0;
let shown = {};                      // list name -> what is on the page (to redraw only on change)
let retry = 1000;
let hidden = false;                  // a phone's page in the background takes no pushes

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + "/ws");
  ws.onopen = () => { retry = 1000; setConnection(true); };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setConnection(false);
    inflight = null;
    ws = null;
    if (!hidden) {
      setTimeout(() => { if (!ws && !hidden) connect(); }, retry);
      retry = Math.min(retry * 2, 8000);
    }
  };
}

// Out of sight (another app, the screen off) the page lets go of its websocket, so the box
// pushes nothing to it; back in sight it connects again and gets everything afresh.
document.addEventListener("visibilitychange", () => {
  hidden = document.visibilityState === "hidden";
  if (hidden && ws) ws.close();
  else if (!hidden && !ws) { retry = 1000; connect(); }
});

function setConnection(on) {
  const box = $("connection");
  box.className = on ? "on" : "off";
  box.textContent = on ? "connected" : "reconnecting… (if it stays so: open the URL `appliance web-url` prints)";
}

// -- sending ---------------------------------------------------------------------------------

function send(command) {
  if (command.cmd === "tap" && (inflight || queue.length)) return;   // a late tap would be a wrong tempo
  if (command.cmd === "set") latestSet.set(command.name, command);
  else if (queue.length < 32) queue.push(command);        // while disconnected: bounded
  pump();
}

function pump() {
  if (inflight || !ws || ws.readyState !== WebSocket.OPEN) return;
  let command = queue.shift();
  if (!command && latestSet.size) {
    const [name, latest] = latestSet.entries().next().value;
    latestSet.delete(name);
    command = latest;
  }
  if (!command) return;
  command.id = nextId++;
  inflight = command;
  ws.send(JSON.stringify(command));
}

// -- receiving -------------------------------------------------------------------------------

function receive(message) {
  if (message.type === "hello") build(message);
  else if (message.type === "status") showStatus(message);
  else if (message.type === "lists") showLists(message);
  else if (message.type === "reply") {
    if (inflight && message.id === inflight.id) inflight = null;
    answered(message);
    pump();
  }
}

function answered(reply) {
  const box = $("answer");
  if (!reply.ok) {
    box.className = "refused";
    box.textContent = reply.error;
    return;
  }
  box.className = "";
  if (reply.cmd === "set") box.textContent = `${reply.name} = ${reply.text}`;
  else if (reply.cmd === "logs") $("logs").textContent = reply.lines.join("\n");
  else if (reply.cmd === "learn") box.textContent = reply.learning ? `learning ${reply.learning}: ${reply.hint}` : "learning cancelled";
  else {
    const said = Object.entries(reply).filter(([k]) => !["ok", "id", "cmd", "type"].includes(k))
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
    box.textContent = `${reply.cmd} ${said}`;
  }
}

// -- the parameters --------------------------------------------------------------------------

function build(hello) {
  const groups = $("groups");
  groups.replaceChildren();
  controls.clear();
  shown = {};
  for (const group of hello.groups) {
    const section = document.createElement("section");
    section.className = "group";
    section.id = `group-${group}`;
    const title = document.createElement("h2");
    title.textContent = group;
    section.append(title);
    for (const spec of hello.params.filter((p) => p.group === group)) section.append(control(spec));
    groups.append(section);
  }
  const target = $("learn-target");
  target.replaceChildren();
  for (const name of [...hello.params.map((p) => p.name), ...hello.actions]) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    target.append(option);
  }
}

// A parameter's control follows the registry: choices (and on/off) a menu; a short run of
// steps a slider in the parameter's own units; anything else a slider along its curve
// (0..1000, mapped by the box exactly as a MIDI knob or an OSC /norm is).
function control(spec) {
  const row = document.createElement("div");
  row.className = "param";
  row.title = `${spec.doc} (${spec.range}, default ${spec.default})`;
  const label = document.createElement("label");
  label.textContent = spec.unit ? `${spec.name} (${spec.unit})` : spec.name;
  label.htmlFor = `p-${spec.name}`;
  row.append(label);
  const entry = { spec, range: null, field: null, select: null, direct: false };
  const toggle = !spec.choices && spec.min === 0 && spec.max === 1 && spec.step === 1;
  if (spec.choices || toggle) {
    const select = document.createElement("select");
    select.id = `p-${spec.name}`;
    for (const choice of spec.choices || ["off", "on"]) {
      const option = document.createElement("option");
      option.value = option.textContent = choice;
      select.append(option);
    }
    select.addEventListener("change", () => send({ cmd: "set", name: spec.name, value: select.value }));
    entry.select = select;
    entry.toggle = toggle;
    row.append(select);
  } else {
    const range = document.createElement("input");
    range.type = "range";
    range.id = `p-${spec.name}`;
    entry.direct = spec.curve === "linear" && spec.step > 0 && (spec.max - spec.min) / spec.step <= 1000;
    if (entry.direct) { range.min = spec.min; range.max = spec.max; range.step = spec.step; }
    else { range.min = 0; range.max = 1000; range.step = 1; }
    const moved = () => {
      editing = spec.name;
      editingUntil = Date.now() + 600;
      send(entry.direct ? { cmd: "set", name: spec.name, value: Number(range.value) }
                        : { cmd: "set", name: spec.name, norm: Number(range.value) / 1000 });
    };
    range.addEventListener("input", moved);
    range.addEventListener("change", moved);
    const field = document.createElement("input");
    field.className = "value";
    field.id = `v-${spec.name}`;
    field.inputMode = "decimal";
    field.addEventListener("focus", () => { editing = spec.name; editingUntil = Infinity; });
    field.addEventListener("blur", () => { editingUntil = Date.now() + 600; });
    field.addEventListener("change", () => send({ cmd: "set", name: spec.name, value: field.value }));
    entry.range = range;
    entry.field = field;
    row.append(range, field);
  }
  controls.set(spec.name, entry);
  show(entry, [spec.value, spec.text, spec.norm]);
  return row;
}

function show(entry, [value, text, norm]) {
  if (editing === entry.spec.name && Date.now() < editingUntil) return;
  if (entry.select) entry.select.value = entry.toggle ? (value ? "on" : "off") : value;
  if (entry.range) {
    entry.range.value = entry.direct ? value : Math.round(norm * 1000);
    entry.field.value = value;
    entry.field.title = text;
  }
}

// -- status and lists ------------------------------------------------------------------------

function showStatus(s) {
  $("s-tempo").textContent = s.tempo.toFixed(1);
  $("s-position").textContent = `${s.bar}:${s.beat}`;
  $("s-transport").textContent = s.transport;
  $("s-music").textContent = s.music ? `${s.music.section} ${s.music.bar_in_section}/${s.music.section_bars} · ${s.music.chord} · ${s.music.scale}` : "";
  $("s-notes").textContent = s.notes;
  $("s-late").textContent = s.late_notes;
  $("s-xruns").textContent = s.xruns;
  $("s-cpu").textContent = Math.round(s.cpu_percent);
  $("s-midi").textContent = s.midi_devices.length ? s.midi_devices.join(", ") : "none";
  $("midi-in").textContent = s.midi_devices.join(", ") || "none";
  $("s-recording").textContent = s.recording ? `● REC ${s.recording.file} ${s.recording.seconds} s` : "";
  const safe = $("safe");
  safe.hidden = !s.safe_mode;
  safe.textContent = s.safe_mode ? `SAFE MODE: ${s.safe_mode_reasons.join("; ")}` : "";
  const error = $("s-error");
  error.hidden = !s.last_error;
  error.textContent = s.last_error || "";
  for (const [name, shownValue] of Object.entries(s.values)) {
    const entry = controls.get(name);
    if (entry) show(entry, shownValue);
  }
  names("presets", s.presets, [["load", (n) => ({ cmd: "preset", action: "load", name: n })]], "preset");
  names("scenes", s.scenes, [["recall", (n) => ({ cmd: "scene", action: "recall", name: n })]], "scene");
}

function showLists(lists) {
  $("midi-out").textContent = lists.outputs.join(", ") || "none";
  const learning = $("learning");
  learning.hidden = !lists.learning;
  learning.textContent = lists.learning ? `learning ${lists.learning}: move a control on a MIDI device` : "";
  if (changed("mappings", lists.mappings)) {
    const list = $("mappings");
    list.replaceChildren();
    for (const mapping of lists.mappings) {
      const target = mapping.param || mapping.action;
      const item = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${target} ← ` + Object.entries(mapping).filter(([k]) => k !== "param" && k !== "action")
        .map(([k, v]) => `${k} ${v}`).join(", ");
      item.append(text, button("unlearn", () => send({ cmd: "unlearn", name: target })));
      list.append(item);
    }
  }
  if (changed("recordings", lists.recordings)) {
    const list = $("recordings");
    list.replaceChildren();
    for (const name of lists.recordings) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/recordings/" + encodeURIComponent(name);
      link.download = name;
      link.textContent = name;
      const text = document.createElement("span");
      text.append(link);
      item.append(text);
      list.append(item);
    }
  }
}

function names(id, list, actions, kind) {
  if (!changed(id, list)) return;
  const box = $(id);
  box.replaceChildren();
  for (const name of list) {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.textContent = name;
    item.append(text);
    for (const [label, command] of actions) item.append(button(label, () => send(command(name))));
    item.append(button("delete", () => {
      if (confirm(`Delete the ${kind} "${name}"?`)) send({ cmd: kind, action: "delete", name });
    }));
    box.append(item);
  }
}

function changed(key, value) {
  const text = JSON.stringify(value);
  if (shown[key] === text) return false;
  shown[key] = text;
  return true;
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

// -- the forms and buttons -------------------------------------------------------------------

function form(id, command) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    send(command(new FormData(event.target)));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("nav.transport button")) {
    element.addEventListener("click", () => send({ cmd: element.dataset.cmd }));
  }
  form("preset-save", (data) => ({ cmd: "preset", action: "save", name: data.get("name").trim() }));
  form("scene-save", (data) => ({ cmd: "scene", action: "save", name: data.get("name").trim() }));
  form("learn", (data) => ({ cmd: "learn", name: data.get("name") }));
  $("learn-cancel").addEventListener("click", () => send({ cmd: "learn", cancel: true }));
  form("record-start", (data) => {
    const name = data.get("name").trim();
    return name ? { cmd: "record", action: "start", name } : { cmd: "record", action: "start" };
  });
  $("record-stop").addEventListener("click", () => send({ cmd: "record", action: "stop" }));
  setInterval(() => { if ($("logs-box").open) send({ cmd: "logs", lines: 200 }); }, 2000);
  $("logs-box").addEventListener("toggle", () => { if ($("logs-box").open) send({ cmd: "logs", lines: 200 }); });
  connect();
});
