// An import's page: while the job is queued or running, poll it through the API and show its
// progress; once it has ended, reload so the rejected lines (rendered by the server) appear.
import { get } from "./api.js";

const section = document.getElementById("import");
const ACTIVE = ["queued", "running", "cancelling"];
const POLL_MS = 1000;

function field(name) {
  return section.querySelector(`[data-testid=${name}]`);
}

function render(job) {
  field("import-status").textContent = job.status;
  field("import-message").textContent = job.message || "";
  field("import-lines-done").textContent = job.lines_done;
  field("import-lines-total").textContent = job.lines_total;
  field("import-images").textContent = job.images_created;
  field("import-duplicates").textContent = job.duplicates;
  field("import-prompts").textContent = job.prompts_created;
  field("import-comparisons").textContent = job.comparisons_created;
  field("import-rejected").textContent = job.rejected;
  const bar = field("import-bar");
  bar.max = Math.max(1, job.lines_total);
  bar.value = job.lines_done;
}

async function poll() {
  try {
    const job = await get(section.dataset.api);
    render(job);
    if (!ACTIVE.includes(job.status)) {
      window.location.reload();
      return;
    }
    field("import-error").textContent = "";
  } catch (failure) {
    field("import-error").textContent = `Could not refresh the progress: ${failure?.message || failure}`;
  }
  window.setTimeout(poll, POLL_MS);
}

if (section && ACTIVE.includes(section.dataset.status)) window.setTimeout(poll, POLL_MS);
