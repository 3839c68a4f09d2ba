// Dataset exports: on the form, the options that only some formats read are hidden while another
// format is chosen (the server draws and checks every control; an option with an error stays in
// view); on an export's page, the export is polled while it runs, then its files are listed with
// download links. Text goes in with textContent only.
import { get, jobLifeText, post } from "./api.js";

const formatSelect = document.querySelector("[data-format-select]");
const section = document.getElementById("export");

function showError(element, error) {
  element.textContent = error?.message || String(error);
  element.hidden = false;
}

function showOptionsOfFormat() {
  for (const setting of document.querySelectorAll("[data-formats]")) {
    const read = setting.dataset.formats.split(" ").includes(formatSelect.value);
    setting.hidden = !read && !setting.classList.contains("has-error");
  }
  for (const group of document.querySelectorAll(".settings-group")) {
    const settings = [...group.querySelectorAll(".setting")];
    group.hidden = settings.length > 0 && settings.every((setting) => setting.hidden);
  }
}

if (formatSelect) {
  formatSelect.addEventListener("change", showOptionsOfFormat);
  showOptionsOfFormat();
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
      const rows = document.createElement("td");
      rows.textContent = file.rows ?? "";
      // Bytes and checksum change from build to build of the same rows (files carry their build
      // time): marked volatile for the screenshot checks; the checksum in a fixed-width font.
      const bytes = document.createElement("td");
      bytes.textContent = file.bytes ?? "";
      bytes.dataset.volatile = "";
      const checksum = document.createElement("td");
      const code = document.createElement("code");
      code.textContent = file.sha256 ? file.sha256.slice(0, 16) : "";
      checksum.append(code);
      checksum.dataset.volatile = "";
      row.append(rows, bytes, checksum);
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
