// Starting a filter run from the browser: posts the form to the API, then opens the run's page.
import { post } from "./api.js";

const form = document.getElementById("filter-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector("[data-testid=filter-error]");
    error.hidden = true;
    let rules = {};
    const text = form.elements.rules.value.trim();
    try {
      if (text) rules = JSON.parse(text);
    } catch (parseError) {
      error.textContent = `The rules are not valid JSON: ${parseError.message}`;
      error.hidden = false;
      return;
    }
    try {
      const run = await post(form.dataset.api, { name: form.elements.name.value, rules });
      window.location.assign(`/filter-runs/${run.id}/`);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
}
