// The units leased to this person: the one on screen first, then a few more whose preview images
// are already downloaded and decoded, so the next one paints the moment a key is pressed. Kept in
// localStorage so a reload resumes at the same unit.

import { post } from "./api.js";
import { store } from "./dom.js";

const WANT_WAITING = 3; // top up when fewer units than this wait behind the one on screen
const FULL = 5; // units to hold (on screen plus waiting) after a lease
const EXTRA_PER_LEASE = 2; // new units asked for at least, beyond those already held
const MAX_LEASE = 10; // the API's cap on `count`
const DRY_SPELL_MS = 10_000; // after a lease brought nothing new, wait before asking again
const EXPIRY_MARGIN_MS = 60_000;

export class UnitBuffer {
  /**
   * @param {object} options
   * @param {string} options.storageKey
   * @param {string} options.url        the work/next/ endpoint
   * @param {string} options.taskType
   * @param {() => Set<number>} options.answered  assignments answered but not yet acknowledged
   */
  constructor({ storageKey, url, taskType, answered }) {
    this.storageKey = storageKey;
    this.url = url;
    this.taskType = taskType;
    this.answered = answered;
    this.units = [];
    this.images = new Map(); // preview URL -> Image, kept so the decoded picture stays cached
    this.decoded = new Set(); // preview URLs whose picture has been decoded
    this.fetching = null;
    this.dryUntil = 0;
    this.noMoreWork = false;
    this.completion = null;
    // Assignments that left the screen with an answer in this page's life. A lease answer may
    // have been built before the server saw that answer, so it can still list them as held.
    this.retired = new Set();
  }

  /** Loads the units saved by an earlier visit, minus expired ones and ones already answered. */
  restore() {
    const answered = this.answered();
    const soon = Date.now() + EXPIRY_MARGIN_MS;
    this.units = store
      .get(this.storageKey, [])
      .filter((unit) => unit && unit.task_type === this.taskType && !answered.has(unit.assignment))
      .filter((unit) => !unit.expires_at || Date.parse(unit.expires_at) > soon);
    this.#save();
    this.#preload();
  }

  get current() {
    return this.units[0] || null;
  }

  get length() {
    return this.units.length;
  }

  /** Drops the unit on screen and returns the next one (or null). */
  advance() {
    const left = this.units.shift();
    if (left) this.retired.add(left.assignment);
    this.#save();
    this.#preload();
    return this.current;
  }

  /** Puts `unit` back on screen (undo), in front of the others. */
  putBack(unit) {
    this.retired.delete(unit.assignment);
    this.units = [unit, ...this.units.filter((other) => other.assignment !== unit.assignment)];
    this.noMoreWork = false;
    this.dryUntil = 0;
    this.#save();
    this.#preload();
  }

  /** Whether a background top-up is worth a request now. */
  get hungry() {
    return this.units.length - 1 < WANT_WAITING && !this.noMoreWork && Date.now() >= this.dryUntil;
  }

  /**
   * Leases more units. The server answers the units this person already holds first (those on
   * screen or waiting here, and those answered but not yet acknowledged), then new ones up to
   * `count`, so `count` covers what is held plus a few new. Resolves to
   * `{added, noMoreWork}`; rejects with an ApiError.
   */
  lease() {
    if (!this.fetching) {
      this.fetching = this.#lease().finally(() => {
        this.fetching = null;
      });
    }
    return this.fetching;
  }

  async #lease() {
    const answered = this.answered();
    const wanted = Math.max(EXTRA_PER_LEASE, FULL - this.units.length);
    const count = Math.min(MAX_LEASE, this.units.length + answered.size + wanted);
    const data = await post(this.url, { task_type: this.taskType, count });
    // Read again after the wait: keys pressed meanwhile answered some of what the server lists.
    const done = new Set([...this.answered(), ...this.retired]);
    const byAssignment = new Map(this.units.map((unit, index) => [unit.assignment, index]));
    let added = 0;
    for (const unit of data?.units || []) {
      if (unit.task_type !== this.taskType || done.has(unit.assignment)) continue;
      const index = byAssignment.get(unit.assignment);
      if (index === undefined) {
        this.units.push(unit);
        added += 1;
      } else if (index > 0) {
        this.units[index] = unit; // fresher image URLs and expiry
      } else {
        this.units[0].expires_at = unit.expires_at; // the one on screen stays as painted
      }
    }
    this.noMoreWork = Boolean(data?.no_more_work) && added === 0;
    // A study participant's end of work: the study's completion code and URL (null for everyone else).
    this.completion = data?.completion ? { ...data.completion, state: data.state } : null;
    this.dryUntil = added ? 0 : Date.now() + DRY_SPELL_MS;
    this.#save();
    this.#preload();
    return { added, noMoreWork: this.noMoreWork };
  }

  /** Starts downloading and decoding the preview images of every unit held, next one first. */
  #preload() {
    const wanted = new Set();
    for (const unit of this.units) {
      for (const image of unit.images || []) {
        if (!image.preview_url) continue;
        wanted.add(image.preview_url);
        if (this.images.has(image.preview_url)) continue;
        const img = new Image();
        img.decoding = "async";
        img.src = image.preview_url;
        const url = image.preview_url;
        img.decode().then(() => {
          if (this.images.get(url) === img) this.decoded.add(url);
        }).catch(() => {}); // a broken image shows its error when painted
        this.images.set(url, img);
      }
    }
    for (const url of this.images.keys()) {
      if (wanted.has(url)) continue;
      this.images.delete(url);
      this.decoded.delete(url);
    }
  }

  /** Whether the preview at `url` is held here already decoded (it paints without waiting). */
  isDecoded(url) {
    return this.decoded.has(url);
  }

  #save() {
    if (this.units.length) store.set(this.storageKey, this.units);
    else store.remove(this.storageKey);
  }
}
