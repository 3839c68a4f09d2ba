// The end of a study participant's work (someone who came through a crowd-platform study link):
// once their quota is done, or no work is left for them, the workspace shows the study's
// completion code, and, where the study set a completion URL, sends them there after a moment.
// Called by the workspace only after its answer queue has drained, so nothing typed is left unsent.

import { el } from "./dom.js";

const REDIRECT_AFTER_MS = 5_000;

/**
 * @param {HTMLElement} root  the workspace element (its `data-mode` says what is on screen)
 * @param {{state: string, code: string, url: string|null, quota: number, judged: number}} completion
 */
export function showCompletion(root, completion) {
  root.querySelector('[data-testid="completion"]')?.remove();
  const finished = completion.state === "quota_done";
  const section = el(
    "section",
    { class: "ws-empty", "data-testid": "completion", "data-state": completion.state, "aria-labelledby": "ws-done-title" },
    el("h2", { id: "ws-done-title", text: finished ? "Thank you, you are done" : "No more work for you in this study" }),
    el("p", { text: `You judged ${completion.judged} of ${completion.quota} units.` }),
  );
  if (completion.code) {
    const code = el("code", { class: "completion-code", "data-testid": "completion-code", text: completion.code });
    section.append(el("p", {}, "Your completion code: ", el("strong", {}, code)));
  }
  let timer = null;
  if (completion.url) {
    section.append(
      el("p", {}, el("a", { href: completion.url, "data-testid": "completion-link", text: "Return to the study platform" }),
        ` (you will be taken there in ${REDIRECT_AFTER_MS / 1000} seconds)`),
    );
    timer = setTimeout(() => window.location.assign(completion.url), REDIRECT_AFTER_MS);
  }
  root.dataset.completed = completion.state;
  root.append(section);
  section.setAttribute("tabindex", "-1");
  section.focus();
  // Undo puts a unit back on screen: the completion is over until the work ends again.
  const watch = new MutationObserver(() => {
    if (root.dataset.mode !== "unit") return;
    clearTimeout(timer);
    section.remove();
    delete root.dataset.completed;
    watch.disconnect();
  });
  watch.observe(root, { attributes: true, attributeFilter: ["data-mode"] });
}
