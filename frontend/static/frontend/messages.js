// The page's two message regions: a polite status line and an error region (role="alert").

import { byTestId, el } from "./dom.js";

const MAX_ERRORS = 3;

/** Announces `text` in the status line (aria-live="polite"). */
export function say(text) {
  byTestId("status-message").textContent = text;
}

/** Adds a line (strings and nodes) to the error region; the same line twice in a row shows once. */
export function showError(...parts) {
  const region = byTestId("error-message");
  const text = parts.map((part) => (typeof part === "string" ? part : part.textContent)).join("");
  const last = region.querySelector("p:last-of-type");
  if (last && last.dataset.text === text) return;
  region.append(el("p", { "data-text": text }, ...parts));
  while (region.querySelectorAll("p").length > MAX_ERRORS) region.querySelector("p").remove();
  let dismiss = byTestId("error-dismiss", region);
  if (!dismiss) {
    dismiss = el("button", { type: "button", "data-testid": "error-dismiss", text: "Dismiss" });
    dismiss.addEventListener("click", () => region.replaceChildren());
  }
  region.append(dismiss); // last, after the newest line
}

/** A link that opens the sign-in page in a new tab, so this page and its queue live on. */
export function signInLink(loginUrl) {
  const next = encodeURIComponent(window.location.pathname);
  return el("a", { href: `${loginUrl}?next=${next}`, target: "_blank", rel: "noopener", text: "Sign in again" });
}
