// Launching and watching auto-annotation jobs: a form that posts to the API, and a job page
// that polls the job's status every second while it runs. Text goes in with textContent only.
import { get, jobLifeText, post } from "./api.js";

const launchForm = document.getElementById("launch-form");
const jobSection = document.getElementById("job");

function showError(element, error) {
  element.textContent = error?.message || String(error);
  element.hidden = false;
}

// "Overall" (the pairwise question) is asked of pair judges, and of score jobs only by a scorer
// of one overall value per image (its option carries data-scores-overall).
function fitOverallToKind() {
  const overall = launchForm.querySelector("[data-testid=launch-aspect-overall]");
  const annotator = launchForm.querySelector("[data-testid=launch-annotator]").selectedOptions[0];
  const kind = launchForm.querySelector("[data-testid=launch-kind]").value;
  const askable = kind === "pairs" || (annotator !== undefined && "scoresOverall" in annotator.dataset);
  overall.disabled = !askable;
  if (!askable) overall.checked = false;
}

if (launchForm) {
  launchForm.querySelector("[data-testid=launch-kind]").addEventListener("change", fitOverallToKind);
  launchForm.querySelector("[data-testid=launch-annotator]").addEventListener("change", fitOverallToKind);
  fitOverallToKind();
  launchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(launchForm);
    const body = {
      machine_annotator: Number(data.get("machine_annotator")),
      kind: data.get("kind"),
      scope: data.get("scope"),
      aspects: data.getAll("aspects"),
      orders: data.get("orders"),
      samples: Number(data.get("samples") || 1),
    };
    if (body.scope === "sample") body.sample_size = Number(data.get("sample_size"));
    try {
      const job = await post(launchForm.dataset.api, body);
      window.location.assign(`/auto-jobs/${job.id}/`);
    } catch (error) {
      showError(launchForm.querySelector("[data-testid=launch-error]"), error);
    }
  });
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function field(name) {
  return jobSection.querySelector(`[data-testid=${name}]`);
}

async function refreshFailures(url) {
  const page = await get(`${url}failures/?page_size=100`);
  const body = jobSection.ownerDocument.querySelector("[data-testid=job-failures] tbody");
  body.replaceChildren(
    ...page.results.map((failure) => {
      const row = document.createElement("tr");
      let item = `image ${failure.image}`;
      if (!failure.image) {
        item = failure.first_image
          ? `pair ${failure.comparison} (first: ${failure.first_image}, sample ${failure.sample})`
          : `pair ${failure.comparison} (every order and sample)`;
      }
      for (const text of [item, failure.aspects.join(", "), failure.error, failure.raw.slice(0, 300)]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
}

function render(job) {
  const p = job.progress;
  field("job-status").textContent = job.status;
  field("job-message").textContent = job.message;
  field("job-life").textContent = jobLifeText(job);
  field("job-done").textContent = p.done;
  field("job-failed").textContent = p.failed;
  field("job-total").textContent = p.total;
  field("job-rate").textContent = `${p.rate_per_s} items/s`;
  field("job-eta").textContent = formatSeconds(p.seconds_left);
  const bar = field("job-bar");
  bar.max = Math.max(1, p.total);
  bar.value = p.done + p.failed;
  const active = ["queued", "running", "cancelling"].includes(job.status);
  field("job-cancel").disabled = !active;
  field("job-resume").disabled = active;
  return active;
}

if (jobSection) {
  const url = jobSection.dataset.api;
  const errorBox = field("job-error");
  let timer = null;
  const poll = async () => {
    try {
      const job = await get(url);
      const active = render(job);
      await refreshFailures(url);
      timer = active ? setTimeout(poll, 1000) : null;
    } catch (error) {
      showError(errorBox, error);
      timer = setTimeout(poll, 3000);
    }
  };
  const act = (name) => async () => {
    try {
      render(await post(`${url}${name}/`, {}));
      if (!timer) poll();
    } catch (error) {
      showError(errorBox, error);
    }
  };
  field("job-cancel").addEventListener("click", act("cancel"));
  field("job-resume").addEventListener("click", act("resume"));
  poll();
}
