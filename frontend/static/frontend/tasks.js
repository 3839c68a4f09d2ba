// What each task type asks of the annotator: its keys, its buttons (rendered by the template) and
// the values of one submission. Keys arrive lower-cased (`A` and `a` act alike). A view calls `submit(values)` exactly once per decision; the
// workspace turns that into a queued submission and shows the next unit.

import { byTestId, setPressed } from "./dom.js";

/** The number a digit key picks: 1..9 themselves, 0 stands for 10. */
export function digitValue(key) {
  if (!/^[0-9]$/.test(key)) return null;
  return key === "0" ? 10 : Number(key);
}

/**
 * @param {object} config  the page's workspace config
 * @param {object} hooks   `submit(values)` records a decision; `say(text)` announces a status line
 * @returns {{reset(): void, onKey(key: string, event: KeyboardEvent): boolean}}
 */
export function createTaskView(config, hooks) {
  const views = { pairwise, aspect_score: aspectScore, personal_rating: personalRating, artifact_flag: artifactFlag };
  return views[config.task_type](config, hooks);
}

const SIDE_KEYS = { 1: "left", ArrowLeft: "left", 2: "right", ArrowRight: "right", 3: "tie", t: "tie" };

/** Rows of choices with one "current" row, moved by ArrowUp / ArrowDown. */
function markCurrent(rows, index) {
  rows.forEach((row, i) => {
    row.classList.toggle("is-current", i === index);
    if (i === index) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  });
}

function pairwise(config, { submit, say, prefs }) {
  const aspects = config.aspects;
  const panel = byTestId("aspect-rows");
  const toggle = byTestId("toggle-aspects");
  const rows = aspects.map((aspect) => byTestId(`aspect-row-${aspect.key}`));
  const overallRow = byTestId("overall-row");
  let perAspect = Boolean(prefs.get("aspects"));
  let answers = {};
  let focus = 0; // index into aspects; aspects.length means the overall question

  function firstUnanswered() {
    const index = aspects.findIndex((aspect) => !(aspect.key in answers));
    return index === -1 ? aspects.length : index;
  }

  function render() {
    panel.hidden = !perAspect;
    panel.closest("[data-testid='unit']").classList.toggle("has-aspects", perAspect);
    setPressed(toggle, perAspect);
    aspects.forEach((aspect, i) => {
      rows[i].querySelectorAll("button[data-choice]").forEach((button) => {
        setPressed(button, answers[aspect.key] === button.dataset.choice);
      });
    });
    markCurrent([...rows, overallRow], perAspect ? focus : -1);
  }

  /** Per-aspect mode may make the page taller than the screen: scrolls the rows in when needed. */
  function keepInView() {
    for (const row of [overallRow, focus < aspects.length ? rows[focus] : overallRow]) {
      const box = row.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) row.scrollIntoView({ block: "nearest" });
    }
  }

  function answerAspect(index, side) {
    answers[aspects[index].key] = side;
    focus = firstUnanswered();
    render();
    keepInView();
  }

  function overall(side) {
    const values = { choice: side };
    if (perAspect && Object.keys(answers).length) values.aspects = { ...answers };
    submit(values);
  }

  function choose(side) {
    if (perAspect && focus < aspects.length) answerAspect(focus, side);
    else overall(side);
  }

  function toggleAspects() {
    perAspect = !perAspect;
    prefs.set("aspects", perAspect);
    focus = firstUnanswered();
    render();
    if (perAspect) keepInView();
    say(perAspect ? "Per-aspect answers on: the keys answer each aspect, then overall." : "Per-aspect answers off.");
  }

  toggle.addEventListener("click", toggleAspects);
  rows.forEach((row, index) => {
    row.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-choice]");
      if (button) answerAspect(index, button.dataset.choice);
    });
  });
  overallRow.querySelectorAll("button[data-choice]").forEach((button) => {
    button.addEventListener("click", () => overall(button.dataset.choice));
  });

  render();
  return {
    reset() {
      answers = {};
      focus = 0;
      render();
    },
    onKey(key) {
      if (key in SIDE_KEYS) {
        choose(SIDE_KEYS[key]);
        return true;
      }
      if (key === "a") {
        toggleAspects();
        return true;
      }
      if (perAspect && (key === "ArrowUp" || key === "ArrowDown")) {
        focus = Math.max(0, Math.min(aspects.length, focus + (key === "ArrowUp" ? -1 : 1)));
        render();
        keepInView();
        return true;
      }
      return false;
    },
  };
}

function aspectScore(config, { submit, say }) {
  const aspects = config.aspects;
  const scale = config.score_scale;
  const rows = aspects.map((aspect) => byTestId(`aspect-row-${aspect.key}`));
  const rationale = byTestId("rationale");
  const submitButton = byTestId("submit-scores");
  let scores = {};
  let focus = 0;

  function render() {
    aspects.forEach((aspect, i) => {
      rows[i].querySelectorAll("button[data-score]").forEach((button) => {
        setPressed(button, scores[aspect.key] === Number(button.dataset.score));
      });
    });
    markCurrent(rows, focus);
    submitButton.setAttribute("aria-disabled", complete() ? "false" : "true");
  }

  function complete() {
    return aspects.every((aspect) => aspect.key in scores);
  }

  function setScore(index, value) {
    scores[aspects[index].key] = value;
    const next = aspects.findIndex((aspect, i) => i > index && !(aspect.key in scores));
    const anyMissing = aspects.findIndex((aspect) => !(aspect.key in scores));
    focus = next !== -1 ? next : anyMissing !== -1 ? anyMissing : index;
    render();
    if (complete()) say("Every aspect scored: press Enter to submit.");
  }

  function trySubmit() {
    if (!complete()) {
      focus = aspects.findIndex((aspect) => !(aspect.key in scores));
      render();
      say(`Score every aspect first: ${aspects[focus].label} is missing.`);
      return;
    }
    const values = { scores: { ...scores } };
    const text = rationale.value.trim();
    if (text) values.rationale = text;
    submit(values);
  }

  rows.forEach((row, index) => {
    row.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-score]");
      if (button) setScore(index, Number(button.dataset.score));
    });
  });
  submitButton.addEventListener("click", trySubmit);
  // One rule, stated beside the box and in the key help: Enter submits, Shift+Enter starts a new
  // line. Leaving the box on Enter also means the digits typed next score again (when an aspect is
  // still missing, the status line names it).
  rationale.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    rationale.blur();
    trySubmit();
  });

  render();
  return {
    reset() {
      scores = {};
      focus = 0;
      rationale.value = "";
      render();
    },
    onKey(key) {
      const value = digitValue(key);
      if (value !== null) {
        if (value <= scale) setScore(focus, value);
        return true;
      }
      if (key === "Enter") {
        trySubmit();
        return true;
      }
      if (key === "r") {
        rationale.focus();
        return true;
      }
      if (key === "ArrowUp" || key === "ArrowDown") {
        focus = Math.max(0, Math.min(aspects.length - 1, focus + (key === "ArrowUp" ? -1 : 1)));
        render();
        return true;
      }
      return false;
    },
  };
}

function personalRating(config, { submit }) {
  const group = byTestId("rating-group");
  group.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-rating]");
    if (button) submit({ rating: Number(button.dataset.rating) });
  });
  return {
    reset() {},
    onKey(key) {
      const value = digitValue(key);
      if (value === null) return false;
      if (value <= config.rating_scale) submit({ rating: value });
      return true;
    },
  };
}

function artifactFlag(config, { submit, say }) {
  const tags = config.artifact_reasons;
  const buttons = new Map(tags.map((tag) => [tag, byTestId(`reason-${tag}`)]));
  let reasons = new Set();
  let freeAsked = false; // "Artifact-free" was chosen once with reasons picked

  function toggleReason(tag) {
    if (reasons.has(tag)) reasons.delete(tag);
    else reasons.add(tag);
    freeAsked = false;
    setPressed(buttons.get(tag), reasons.has(tag));
  }

  // Reasons belong to flawed images only: with some picked, "Artifact-free" asks first, and only a
  // second "Artifact-free" drops them.
  function flagFree() {
    if (reasons.size && !freeAsked) {
      freeAsked = true;
      const picked = tags.filter((tag) => reasons.has(tag)).map((tag) => tag.replace(/_/g, " ")).join(", ");
      say(`You picked ${picked}. “Has artifacts” keeps them; “Artifact-free” again drops them.`);
      return;
    }
    submit({ has_artifacts: false });
  }
  const flagArtifacts = () => submit({ has_artifacts: true, reasons: tags.filter((tag) => reasons.has(tag)) });

  buttons.forEach((button, tag) => button.addEventListener("click", () => toggleReason(tag)));
  byTestId("flag-free").addEventListener("click", flagFree);
  byTestId("flag-artifacts").addEventListener("click", flagArtifacts);

  return {
    reset() {
      reasons = new Set();
      freeAsked = false;
      buttons.forEach((button) => setPressed(button, false));
    },
    onKey(key) {
      const value = digitValue(key);
      if (value !== null) {
        if (value <= tags.length) toggleReason(tags[value - 1]);
        return true;
      }
      if (key === "f") {
        flagFree();
        return true;
      }
      if (key === "a") {
        flagArtifacts();
        return true;
      }
      return false;
    },
  };
}
