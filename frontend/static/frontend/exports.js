// Dataset exports: a form that posts to the API, and an export page that polls the export while
// it runs, then lists its files with download links. Text goes in with textContent only.
import { get, jobLifeText, post } from "./api.js";

const form = document.getElementById("export-form");
const section = document.getElementById("export");

function showError(element, error) {
  element.textContent = error?.message || String(error);
  element.hidden = false;
}

if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector("[data-testid=export-error]");
    error.hidden = true;
    let options = {};
    try {
      const text = form.elements.options.value.trim();
      if (text) options = JSON.parse(text);
    } catch (parseError) {
      showError(error, `The options are not valid JSON: ${parseError.message}`);
      return;
    }
    const run = form.elements.filter_run.value;
    const body = {
      format: form.elements.format.value,
      container: form.elements.container.value,
      destination: form.elements.destination.value,
      filter_run: run ? Number(run) : null,
      options,
    };
    try {
      const created = await post(form.dataset.api, body);
      window.location.assign(`/exports/${created.id}/`);
    } catch (failure) {
      showError(error, failure);
    }
  });
}

function field(name) {
  return document.querySelector(`[data-testid=${name}]`);
}

function renderFiles(files) {
  field("export-files").querySelector("tbody").replaceChildren(
    ...files.map((file) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = file.url;
      link.textContent = file.path;
      link.dataset.testid = `export-file-${file.path}`;
      name.append(link);
      row.append(name);
      for (const text of [file.rows ?? "", file.bytes ?? "", file.sha256 ? file.sha256.slice(0, 16) : ""]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
}

function render(exported) {
  field("export-status").textContent = exported.status;
  field("export-message").textContent = exported.message;
  field("export-life").textContent = jobLifeText(exported);
  field("export-rows").textContent = `${exported.rows_done} / ${exported.rows_total}`;
  const bar = field("export-bar");
  bar.max = Math.max(1, exported.rows_total);
  bar.value = exported.rows_done;
  const active = ["queued", "running", "cancelling"].includes(exported.status);
  field("export-cancel").disabled = !active;
  field("export-archive").hidden = exported.status !== "succeeded";
  renderFiles(exported.files);
  return active;
}

if (section) {
  const url = section.dataset.api;
  const errorBox = field("export-error");
  let timer = null;
  const poll = async () => {
    try {
      timer = render(await get(url)) ? setTimeout(poll, 1000) : null;
    } catch (error) {
      showError(errorBox, error);
      timer = setTimeout(poll, 3000);
    }
  };
  field("export-cancel").addEventListener("click", async () => {
    try {
      render(await post(`${url}cancel/`, {}));
      if (!timer) poll();
    } catch (error) {
      showError(errorBox, error);
    }
  });
  poll();
}
