// The submissions not yet acknowledged by the server, persisted in localStorage so that nothing
// typed is lost to a reload, a closed tab or a dropped connection. Items are sent in order, in
// batches, one request at a time; each carries the idempotency key made when the key was
// pressed, so sending an item twice stores it once (the server answers "duplicate"; should a key
// come back with a different item, it answers "conflict" and keeps the first).

import { post } from "./api.js";
import { store } from "./dom.js";

const MAX_BATCH = 50;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;
const KEEPALIVE_MAX_BYTES = 60_000; // browsers cap keepalive bodies at 64 KiB

/** The item as the API wants it: fields starting with "_" stay in the browser (e.g. `_unit`, for undo). */
function wire(item) {
  return Object.fromEntries(Object.entries(item).filter(([name]) => !name.startsWith("_")));
}

export class SubmissionQueue {
  /**
   * @param {object} options
   * @param {string} options.storageKey  localStorage key (one per user, project and task type)
   * @param {string} options.url         the work/submit/ endpoint
   * @param {(queue: SubmissionQueue) => void} [options.onChange]  length or sending state changed
   * @param {(item: object, message: string) => void} [options.onRejected]  the server refused an item
   * @param {(item: object, message: string) => void} [options.onConflict]  the item's key was stored with another answer
   * @param {(stored: number) => void} [options.onSent]  a batch was acknowledged
   * @param {(error: Error, retryInMs: number) => void} [options.onTrouble]  a send failed; it will retry
   */
  constructor({ storageKey, url, onChange, onRejected, onConflict, onSent, onTrouble }) {
    this.storageKey = storageKey;
    this.url = url;
    this.onChange = onChange || (() => {});
    this.onRejected = onRejected || (() => {});
    this.onConflict = onConflict || this.onRejected;
    this.onSent = onSent || (() => {});
    this.onTrouble = onTrouble || (() => {});
    this.items = store.get(storageKey, []).filter((item) => item && item.idempotency_key);
    this.forgotten = new Set(); // keys this tab acknowledged or took back (see #save)
    this.inflight = 0; // how many items at the head are in the request being sent
    this.failures = 0; // consecutive failed sends, for the backoff
    this.isolate = 0; // items still to send one by one after a batch was refused as a whole
    this.retryAt = null;
    this.timer = null;
    this.running = null;
    this.waiters = [];
    window.addEventListener("online", () => this.sendNow());
    window.addEventListener("pagehide", () => this.#sendOnUnload());
  }

  get length() {
    return this.items.length;
  }

  get sending() {
    return this.inflight > 0;
  }

  /** Assignment ids answered here but not yet acknowledged: the server still counts them as held. */
  assignments() {
    return new Set(this.items.map((item) => item.assignment));
  }

  enqueue(item) {
    this.items.push(item);
    this.#save();
    this.onChange(this);
    // A microtask later, so that key presses landing while a request is out share the next batch.
    queueMicrotask(() => this.#kick());
  }

  /** Removes and returns the newest item if it has not been sent yet, else null. */
  takeBackLast() {
    if (this.items.length <= this.inflight) return null;
    const item = this.items.pop();
    this.forgotten.add(item.idempotency_key);
    this.#save();
    this.onChange(this);
    if (!this.items.length) this.#wake();
    return item;
  }

  /** Sends now, forgetting any backoff. Resolves when the queue is empty or a send has failed. */
  sendNow() {
    this.failures = 0;
    clearTimeout(this.timer);
    this.timer = null;
    this.retryAt = null;
    return this.#run();
  }

  /** Resolves once every item has been acknowledged (or refused). */
  drain() {
    if (!this.items.length) return Promise.resolve();
    this.#kick();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  #kick() {
    if (!this.timer) this.#run();
  }

  #run() {
    if (!this.running) {
      this.running = this.#sendAll().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  async #sendAll() {
    while (this.items.length) {
      const progressed = await this.#sendBatch();
      if (!progressed) {
        this.#retryLater();
        return;
      }
    }
    this.failures = 0;
    this.#wake();
  }

  /** Sends the head of the queue once; false when it should be retried later. */
  async #sendBatch() {
    const batch = this.items.slice(0, this.isolate > 0 ? 1 : MAX_BATCH);
    this.inflight = batch.length;
    this.onChange(this);
    try {
      const data = await post(this.url, { submissions: batch.map(wire) });
      return this.#settle(batch, data?.results);
    } catch (error) {
      // Final answers: 400, refused; 409 "conflict", a batch of one whose key holds another answer.
      const conflict = error.status === 409 && error.code === "conflict";
      if (error.status !== 400 && !conflict) {
        this.lastError = error;
        return false;
      }
      const results = error.body?.results ?? error.body?.extra?.results;
      if (Array.isArray(results) && results.length) return this.#settle(batch, results);
      if (batch.length === 1) {
        const status = conflict ? "conflict" : "rejected";
        return this.#settle(batch, [{ idempotency_key: batch[0].idempotency_key, status, message: error.message }]);
      }
      // The batch as a whole was refused: send its items alone to find the one at fault.
      this.isolate = batch.length;
      return true;
    } finally {
      this.inflight = 0;
      this.onChange(this);
    }
  }

  /** Applies the server's per-item answers; items it did not mention stay for the next send. */
  #settle(batch, results) {
    const answers = new Map((results || []).map((result) => [result.idempotency_key, result]));
    const settled = batch.filter((item) => answers.has(item.idempotency_key));
    if (!settled.length) {
      this.lastError = new Error("The server did not answer for any item of the batch.");
      return false;
    }
    const keys = new Set(settled.map((item) => item.idempotency_key));
    this.items = this.items.filter((item) => !keys.has(item.idempotency_key));
    keys.forEach((key) => this.forgotten.add(key));
    this.isolate = Math.max(0, this.isolate - settled.length);
    this.failures = 0;
    this.#save();
    let stored = 0;
    for (const item of settled) {
      const answer = answers.get(item.idempotency_key);
      if (answer.status === "rejected") this.onRejected(item, answer.message || "refused by the server");
      else if (answer.status === "conflict") this.onConflict(item, answer.message || "its key holds another answer");
      else stored += 1; // "stored", or "duplicate": an earlier try got through
    }
    this.onSent(stored);
    return true;
  }

  #retryLater() {
    this.failures += 1;
    const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (this.failures - 1));
    const delay = Math.round(base * (0.8 + 0.2 * Math.random()));
    this.retryAt = Date.now() + delay;
    this.onTrouble(this.lastError, delay);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retryAt = null;
      this.#run();
    }, delay);
    this.onChange(this);
  }

  #wake() {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((resolve) => resolve());
  }

  /** Writes this tab's items, keeping any another tab (same key) added that this tab never saw. */
  #save() {
    const mine = new Set(this.items.map((item) => item.idempotency_key));
    const others = store.get(this.storageKey, []).filter(
      (item) => item && !mine.has(item.idempotency_key) && !this.forgotten.has(item.idempotency_key),
    );
    const all = [...others, ...this.items];
    if (all.length) store.set(this.storageKey, all);
    else store.remove(this.storageKey);
  }

  /** Last chance before the tab goes: send what is left with keepalive. The items stay stored,
   * so the next visit sends them again and the server answers "duplicate". */
  #sendOnUnload() {
    const batch = [];
    let bytes = 20;
    for (const item of this.items.slice(0, MAX_BATCH)) {
      bytes += JSON.stringify(wire(item)).length + 1;
      if (bytes > KEEPALIVE_MAX_BYTES) break;
      batch.push(wire(item));
    }
    if (batch.length) post(this.url, { submissions: batch }, { keepalive: true }).catch(() => {});
  }
}
