// Small DOM helpers. Text always goes in through textContent / text nodes, never as HTML.

/** The element with `data-testid="<id>"` (the page's stable hooks double as its selectors). */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${CSS.escape(id)}"]`);
}

/** A new element: `attrs` become attributes (`text` sets textContent), `children` are nodes or strings. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

export function setPressed(button, pressed) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
}

/** Runs `callback` once the frame that shows the current DOM has been painted: requestAnimationFrame
 * runs just before the paint, and a message posted from it is delivered just after. */
export function afterNextPaint(callback) {
  requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => callback();
    channel.port2.postMessage(null);
  });
}

/** localStorage that never throws: a full or disabled store must not stop the page. */
export const store = {
  get(key, fallback = null) {
    try {
      const text = window.localStorage.getItem(key);
      return text === null ? fallback : JSON.parse(text);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(key, JSON.stringify(value));
      return true;
    } catch {
      return false;
    }
  },
  remove(key) {
    try {
      window.localStorage.removeItem(key);
    } catch {
      /* nothing to do */
    }
  },
};

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
