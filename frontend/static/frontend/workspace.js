// The annotator workspace: shows one leased unit at a time, turns each decisive key press into a
// queued submission and paints the next (already preloaded) unit at once; the network catches up
// in the background. Exposes `window.workspace` for tests and benchmarks, and marks
// `keypress` / `unit-painted` in the performance timeline.

import { get, post, setCsrfFallback } from "./api.js";
import { showCompletion } from "./completion.js";
import { byTestId, sleep, store } from "./dom.js";
import { installKeys } from "./keys.js";
import { say, showError, signInLink } from "./messages.js";
import { createOnboarding } from "./onboarding.js";
import { SubmissionQueue } from "./queue.js";
import { createStage } from "./stage.js";
import { createTaskView } from "./tasks.js";
import { UnitBuffer } from "./units.js";

const config = JSON.parse(document.getElementById("workspace-config").textContent);
setCsrfFallback(config.csrf_token);

const scope = `${config.user}:${config.slug}:${config.task_type}`;
const prefsKey = `prefstudio:prefs:${config.user}:${config.slug}`;
const prefs = {
  get: (name) => store.get(prefsKey, {})[name],
  set: (name, value) => store.set(prefsKey, { ...store.get(prefsKey, {}), [name]: value }),
};

const ui = {
  root: byTestId("workspace"),
  unit: byTestId("unit"),
  loading: byTestId("loading"),
  noWork: byTestId("no-work"),
  checkAgain: byTestId("check-again"),
  pending: byTestId("pending-count"),
  sync: byTestId("sync-state"),
  doneToday: byTestId("progress-done-today"),
  left: byTestId("progress-left"),
  undo: byTestId("undo"),
  skip: byTestId("skip"),
  skipForm: byTestId("skip-form"),
  skipReason: byTestId("skip-reason"),
  skipCancel: byTestId("skip-cancel"),
  zoom: byTestId("zoom"),
  help: byTestId("key-help"),
  helpToggle: byTestId("help-toggle"),
  helpClose: byTestId("help-close"),
  instructions: byTestId("instructions"),
  instructionsClose: byTestId("instructions-close"),
  editProfile: byTestId("edit-profile"),
};

let mode = "loading"; // loading | unit | empty | onboarding | stopped
let seekingWork = false;
let undoing = false;
let resolveReady;
const ready = new Promise((resolve) => {
  resolveReady = resolve;
});

// --- submissions ----------------------------------------------------------------------------

function updateSync() {
  ui.pending.textContent = String(queue.length);
  let state = "saved";
  let text = "All saved";
  if (queue.retryAt) {
    state = "retrying";
    text = "Server unreachable: answers kept here, retrying";
  } else if (queue.length) {
    state = "sending";
    text = "Sending…";
  }
  ui.root.dataset.sync = state;
  if (ui.sync.textContent !== text) ui.sync.textContent = text;
}

/** The prompt (shortened) of the unit a queued item answers, to name it in a message. */
function unitName(item) {
  const prompt = item._unit?.prompt?.text || `unit ${item.assignment}`;
  return prompt.length > 60 ? `${prompt.slice(0, 60)}…` : prompt;
}

const queue = new SubmissionQueue({
  storageKey: `prefstudio:queue:${scope}`,
  url: `${config.api_base}submit/`,
  onChange: updateSync,
  onSent(stored) {
    doneToday.changes += 1; // the server's count moved
    if (stored) refreshProgressSoon();
  },
  onRejected(item, message) {
    countDone(item, -1);
    showError(`Not saved: your answer for “${unitName(item)}” was refused: ${message}`);
  },
  onConflict(item, message) {
    countDone(item, -1);
    showError(`Not saved: your answer for “${unitName(item)}” conflicts with a different answer already ` +
      `stored under the same key; the stored answer is kept (${message}).`);
  },
  onTrouble(error) {
    if (error?.status === 401) showError("You are signed out; your answers are kept here. ", signInLink(config.login_url));
    else if (error?.status === 403) showError(`The server refused your answers: ${error.message}`);
    else if (queue.failures === 1) say("Connection trouble: your answers are kept here and will be sent.");
  },
});

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID exists only on HTTPS and localhost; build the same v4 UUID elsewhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Records the decision on the unit on screen and shows the next unit. */
function decide(values) {
  const unit = stage.shown;
  if (mode !== "unit" || !unit) return;
  queue.enqueue({
    idempotency_key: newKey(),
    assignment: unit.assignment,
    latency_ms: stage.latencyMs(),
    ...values,
    _unit: unit, // stays in the browser: lets undo put an unsent answer's unit back
  });
  countDone(values, +1);
  if (ui.instructions.open) toggleInstructions(false); // answering means they have been read
  const next = buffer.advance();
  if (next) show(next);
  else seekWork();
  topUp();
}

// --- units ----------------------------------------------------------------------------------

const buffer = new UnitBuffer({
  storageKey: `prefstudio:units:${scope}`,
  url: `${config.api_base}next/`,
  taskType: config.task_type,
  answered: () => queue.assignments(),
});

const stage = createStage({
  taskType: config.task_type,
  isDecoded: (url) => buffer.isDecoded(url),
  onImageError() {
    if (!prefs.get("skipReason")) ui.skipReason.value = "image did not load";
  },
});

function setMode(next) {
  mode = next;
  ui.root.dataset.mode = next;
  ui.root.setAttribute("aria-busy", next === "loading" ? "true" : "false");
  ui.unit.hidden = next !== "unit";
  ui.loading.hidden = next !== "loading";
  ui.noWork.hidden = next !== "empty";
  ui.skip.disabled = next !== "unit";
  ui.zoom.disabled = next !== "unit";
  ui.undo.disabled = next === "onboarding" || next === "stopped";
  if (ui.editProfile) ui.editProfile.disabled = next === "onboarding";
  if (next !== "unit") closeSkip();
  if (next === "empty" || next === "onboarding" || next === "stopped") resolveReady();
}

function show(unit) {
  closeSkip();
  stage.paint(unit, resolveReady);
  task.reset();
  setMode("unit");
  if (!instructionsRead) ui.instructions.open = true; // until they have been read once
}

/** Leases more units in the background when few are left; never blocks the screen. */
function topUp() {
  if (mode === "onboarding" || mode === "stopped" || !buffer.hungry) return;
  buffer.lease().catch(leaseFailed);
}

/** With nothing on screen: lease until a unit comes, or until the project has none left. */
async function seekWork() {
  if (seekingWork) return;
  seekingWork = true;
  setMode("loading");
  let failures = 0;
  try {
    while (!buffer.current) {
      let noMoreWork;
      try {
        ({ noMoreWork } = await buffer.lease());
        failures = 0;
      } catch (error) {
        if (leaseFailed(error)) return;
        failures += 1;
        await sleep(Math.min(10_000, 500 * 2 ** failures));
        continue;
      }
      if (buffer.current) break;
      if (queue.length) {
        await queue.drain(); // held units may be answers still on their way to the server
      } else if (noMoreWork) {
        if (buffer.completion) {
          setMode("stopped"); // a study participant's work has ended: the study's completion screen
          showCompletion(ui.root, buffer.completion);
        } else setMode("empty");
        refreshProgressSoon(0);
        return;
      } else {
        say("Every unit left is in someone else's hands right now; looking again in a few seconds.");
        await sleep(5_000);
      }
    }
    if (mode !== "onboarding" && buffer.current !== stage.shown) show(buffer.current);
    else if (mode === "loading") setMode("unit");
  } finally {
    seekingWork = false;
  }
}

/** Handles a failed lease; true when retrying cannot help (the page shows why). */
function leaseFailed(error) {
  const consent = error.code === "consent_required" || (error.status === 403 && /consent/i.test(error.message));
  if (config.task_type === "personal_rating" && consent) {
    openOnboarding(false);
    return true;
  }
  if (error.status === 401) {
    showError("You are signed out. ", signInLink(config.login_url));
    return false; // keeps trying: signing in from another tab lets this page go on
  }
  if (!error.retryable) {
    showError(`No work could be leased: ${error.message}`);
    if (!buffer.current) setMode("stopped");
    return true;
  }
  say("Cannot reach the server; trying again.");
  return false;
}

function restore(unit) {
  buffer.putBack(unit);
  show(unit);
}

/** Takes back the newest answer: from the queue if it was not sent yet, else through the API. */
async function undo() {
  if (undoing || mode === "onboarding") return;
  const item = queue.takeBackLast();
  if (item?._unit) {
    countDone(item, -1);
    restore(item._unit);
    say("Undone: your last answer was never sent. Answer this unit again.");
    return;
  }
  undoing = true;
  say("Undoing…");
  try {
    const drained = await Promise.race([queue.drain().then(() => true), sleep(10_000).then(() => false)]);
    if (!drained) throw new Error("your earlier answers are still waiting to be sent");
    const data = await post(`${config.api_base}undo/`, {});
    doneToday.changes += 1;
    const unit = data?.units?.[0];
    if (unit && unit.task_type === config.task_type) {
      restore(unit);
      say("Undone. Answer this unit again.");
    } else {
      say("Undone: your last answer in this project was on another task page.");
    }
  } catch (error) {
    if (error.status === 404) say("Nothing to undo.");
    else showError(`Undo failed: ${error.message}`);
  } finally {
    undoing = false;
    refreshProgressSoon(0);
  }
}

// --- progress -------------------------------------------------------------------------------

let progressTimer = null;

// "Done today" counts each answer (not skips) the moment it is given. The server's figure replaces
// the count only when it is known to be exact: nothing was sent, answered or acknowledged while it
// was read; `here` then holds the answers still waiting in the queue.
const doneToday = { base: null, here: 0, changes: 0 };

function countDone(item, step) {
  if (item.skip) return;
  doneToday.here += step;
  doneToday.changes += 1;
  if (doneToday.base !== null) ui.doneToday.textContent = String(doneToday.base + doneToday.here);
}

/** Reads the figures again in `delay` ms; a read already due is not pushed back by a later call. */
function refreshProgressSoon(delay = 500) {
  if (progressTimer !== null && delay > 0) return;
  clearTimeout(progressTimer);
  progressTimer = setTimeout(() => {
    progressTimer = null;
    refreshProgress();
  }, delay);
}

async function refreshProgress() {
  const changes = doneToday.changes;
  const quiet = !queue.sending;
  try {
    const progress = await get(`${config.api_base}progress/?task_type=${encodeURIComponent(config.task_type)}`);
    if (quiet && !queue.sending && changes === doneToday.changes) {
      doneToday.base = progress.done_today;
      doneToday.here = queue.items.filter((item) => !item.skip).length;
    }
    if (doneToday.base !== null) ui.doneToday.textContent = String(doneToday.base + doneToday.here);
    ui.left.textContent = String(progress.left_in_project);
  } catch {
    // The figures stay as they were; they are refreshed after the next acknowledged batch.
  }
}

// --- tools: skip, help, instructions, profile ------------------------------------------------

function openSkip() {
  ui.skipForm.hidden = false;
  ui.skip.setAttribute("aria-expanded", "true");
  ui.skipReason.value = ui.skipReason.value || prefs.get("skipReason") || "cannot judge";
  ui.skipReason.focus();
  ui.skipReason.select();
}

function closeSkip() {
  const hadFocus = ui.skipForm.contains(document.activeElement);
  ui.skipForm.hidden = true;
  ui.skip.setAttribute("aria-expanded", "false");
  if (hadFocus) document.activeElement.blur();
}

function confirmSkip(event) {
  event.preventDefault();
  const reason = ui.skipReason.value.trim();
  if (reason) prefs.set("skipReason", reason);
  closeSkip();
  ui.skipReason.value = "";
  decide({ skip: true, reason });
}

// The key help and the instructions are panels over the page (one at a time); nothing moves.
function toggleHelp(open = ui.help.hidden) {
  ui.help.hidden = !open;
  ui.helpToggle.setAttribute("aria-expanded", String(open));
  if (open) ui.instructions.open = false;
}

// Each task page has its own instructions; once closed, later visits start with them closed.
const readKey = `instructionsRead:${config.task_type}`;
let instructionsRead = Boolean(prefs.get(readKey));

function markInstructionsRead() {
  if (instructionsRead) return;
  instructionsRead = true;
  prefs.set(readKey, true);
}

function toggleInstructions(open = !ui.instructions.open) {
  ui.instructions.open = open;
  if (!open) markInstructionsRead();
}

function instructionsToggled() {
  if (ui.instructions.open) toggleHelp(false);
  else markInstructionsRead();
}

const onboarding =
  config.task_type === "personal_rating"
    ? createOnboarding({ profileUrl: config.profile_url, onSaved: resume, onCancel: resume })
    : null;

function openOnboarding(editing) {
  setMode("onboarding");
  onboarding.open({ editing });
}

function resume() {
  config.consent = true;
  if (buffer.current) show(buffer.current);
  else seekWork();
  topUp();
}

// --- keyboard -------------------------------------------------------------------------------

function dispatch(key, event) {
  if (key === "?") {
    toggleHelp();
    return true;
  }
  if (key === "Escape" && !ui.help.hidden) {
    toggleHelp(false);
    return true;
  }
  if (key === "Escape" && ui.instructions.open) {
    toggleInstructions(false);
    return true;
  }
  if (mode === "onboarding") return false;
  if (key === "i") {
    toggleInstructions();
    return true;
  }
  if (key === "u") {
    undo();
    return true;
  }
  if (mode !== "unit") return false;
  if (key === "s") {
    openSkip();
    return true;
  }
  if (key === "z") {
    stage.toggleZoom();
    return true;
  }
  return task.onKey(key, event);
}

function escapeField(target) {
  if (ui.skipForm.contains(target)) closeSkip();
  else target.blur();
}

// --- start ----------------------------------------------------------------------------------

const task = createTaskView(config, { submit: decide, say, prefs });

function bind() {
  installKeys(dispatch, escapeField);
  ui.undo.addEventListener("click", undo);
  ui.skip.addEventListener("click", () => (ui.skipForm.hidden ? openSkip() : closeSkip()));
  ui.skipForm.addEventListener("submit", confirmSkip);
  ui.skipCancel.addEventListener("click", closeSkip);
  ui.zoom.addEventListener("click", () => stage.toggleZoom());
  ui.helpToggle.addEventListener("click", () => toggleHelp());
  ui.helpClose.addEventListener("click", () => toggleHelp(false));
  ui.instructionsClose.addEventListener("click", () => toggleInstructions(false));
  ui.instructions.addEventListener("toggle", instructionsToggled);
  ui.checkAgain.addEventListener("click", () => {
    buffer.noMoreWork = false;
    buffer.dryUntil = 0;
    seekWork();
  });
  ui.editProfile?.addEventListener("click", () => openOnboarding(true));
}

async function start() {
  bind();
  updateSync();
  refreshProgress();
  if (onboarding && !config.consent) {
    openOnboarding(false);
    queue.sendNow();
    return;
  }
  buffer.restore();
  if (buffer.current) show(buffer.current); // resume at the unit shown before the reload
  await queue.sendNow(); // answers an earlier visit left unsent go before anything else
  if (!buffer.current) seekWork();
  else topUp();
}

window.workspace = {
  ready,
  queueLength: () => queue.length,
  currentUnit: () => (mode === "unit" ? stage.shown : null),
  bufferedUnits: () => buffer.length,
  /** Resolves when every queued submission has been acknowledged (or refused). */
  flush: () => queue.drain(),
};

start();
