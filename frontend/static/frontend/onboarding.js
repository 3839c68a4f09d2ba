// The personal-rating onboarding (PAMELA): consent, then optional demographics and taste
// questions, saved with PUT /api/v1/me/profile/. Shown before the first personal rating and
// again from "Edit profile".

import { get, put } from "./api.js";
import { byTestId } from "./dom.js";

const FIELDS = ["age_band", "gender", "nationality", "art_experience", "photography_experience"];

/**
 * @param {object} options
 * @param {string} options.profileUrl
 * @param {() => void} options.onSaved    called after the profile is saved with consent
 * @param {() => void} options.onCancel   called when an edit is abandoned
 */
export function createOnboarding({ profileUrl, onSaved, onCancel }) {
  const form = byTestId("onboarding-form");
  const consent = byTestId("consent");
  const error = byTestId("onboarding-error");
  const cancel = byTestId("onboarding-cancel");
  const submitButton = byTestId("onboarding-submit");

  // Fields the person changed while the saved profile was loading: the answer must not undo them.
  const touched = new Set();
  form.addEventListener("input", (event) => touched.add(event.target.name));
  form.addEventListener("change", (event) => touched.add(event.target.name));

  function showError(text) {
    error.textContent = text;
  }

  async function prefill() {
    touched.clear();
    try {
      const profile = await get(profileUrl);
      if (!touched.has(consent.name)) consent.checked = Boolean(profile?.consent_at);
      for (const name of FIELDS) {
        if (profile && typeof profile[name] === "string" && !touched.has(name)) form.elements[name].value = profile[name];
      }
    } catch {
      // An empty form is a fine start; saving will say what is wrong if the server is away.
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!consent.checked) {
      consent.setAttribute("aria-invalid", "true");
      showError("Please tick the consent box to start rating.");
      consent.focus();
      return;
    }
    consent.removeAttribute("aria-invalid");
    showError("");
    const body = { consent: true };
    for (const name of FIELDS) body[name] = form.elements[name].value.trim();
    submitButton.disabled = true;
    try {
      await put(profileUrl, body);
      form.hidden = true;
      onSaved();
    } catch (err) {
      showError(`Your answers were not saved: ${err.message}`);
    } finally {
      submitButton.disabled = false;
    }
  });

  cancel.addEventListener("click", () => {
    form.hidden = true;
    onCancel();
  });

  return {
    get isOpen() {
      return !form.hidden;
    },
    /** Shows the form; `editing` offers Cancel (consent was given before). */
    async open({ editing = false } = {}) {
      showError("");
      cancel.hidden = !editing;
      submitButton.textContent = editing ? "Save" : "Save and start";
      form.hidden = false;
      await prefill();
      consent.focus();
    },
  };
}
