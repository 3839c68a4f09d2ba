// Which key presses reach the workspace, and the `keypress` performance mark. Typing in a form
// field, browser shortcuts, auto-repeat and Enter / Space on a focused button are left alone.

/**
 * @param {(key: string, event: KeyboardEvent) => boolean} dispatch  acts on a key (letters
 *   arrive lower-cased); returns whether it did anything
 * @param {(target: Element) => void} onEscapeInField  Escape pressed while typing in a field
 */
export function installKeys(dispatch, onEscapeInField) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") {
        event.preventDefault();
        onEscapeInField(target);
      }
      return;
    }
    if ((event.key === "Enter" || event.key === " ") && target?.closest("button, a, summary")) return;
    if (event.repeat) return; // holding a key down must not answer unit after unit
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (!dispatch(key, event)) return;
    event.preventDefault();
    // Stamped with the event's own time, so the queueing delay before this handler counts too.
    performance.mark("keypress", { startTime: event.timeStamp, detail: { key } });
  });
}
