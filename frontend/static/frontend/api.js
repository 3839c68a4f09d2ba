// JSON over fetch with the session cookie and CSRF header; every failure becomes an ApiError.

export class ApiError extends Error {
  /** `status` 0 means the request never got an answer (offline, DNS, connection reset). */
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }

  /** The API's machine-readable reason (`extra.code`), when it gave one. */
  get code() {
    return this.body?.extra?.code ?? this.body?.code ?? null;
  }

  /** Whether sending the same request again later may succeed. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }

  get signedOut() {
    return this.status === 401;
  }
}

let fallbackCsrfToken = "";

export function setCsrfFallback(token) {
  fallbackCsrfToken = token || "";
}

function csrfToken() {
  // The cookie is fresher than the page: signing in again in another tab rotates it.
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : fallbackCsrfToken;
}

export async function request(method, url, body, { keepalive = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken();
  }
  let response;
  let text;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive,
    });
    text = await response.text();
  } catch {
    throw new ApiError(0, null, "No answer from the server (offline?).");
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data, data?.message || `The server answered ${response.status}.`);
  }
  return data;
}

export const get = (url) => request("GET", url);
export const post = (url, body, options) => request("POST", url, body, options);
export const put = (url, body) => request("PUT", url, body);

// One line on a background job's life (imports, auto-annotation, filter runs, exports): who
// started it and when, which attempt runs it, and, while it runs, its worker's last sign of life.
export function jobLifeText(job) {
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
  const parts = [`started by ${job.created_by || "nobody known"} at ${when(job.created_at)}`];
  if (job.attempts > 1) parts.push(`attempt ${job.attempts} (an earlier worker stopped)`);
  if (job.heartbeat_at && ["running", "cancelling"].includes(job.status)) {
    parts.push(`worker last seen ${when(job.heartbeat_at)}`);
  }
  return parts.join(" · ");
}
