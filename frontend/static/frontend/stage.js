// Putting a unit on screen: the prompt as text, the image(s) (preview fitted to its frame, or the
// original at real size when zoomed, panned by dragging), and the `unit-painted` performance mark
// once the pictures are decoded and painted.

import { afterNextPaint, byTestId, el, setPressed } from "./dom.js";

const ALT = { left: "Left image", right: "Right image", single: "The image to judge" };

/**
 * @param {object} options
 * @param {string} options.taskType
 * @param {() => void} options.onImageError  an image failed to load
 * @param {(url: string) => boolean} [options.isDecoded]  whether a preview is decoded already (preloaded)
 */
export function createStage({ taskType, onImageError, isDecoded = () => false }) {
  const sides = taskType === "pairwise" ? ["left", "right"] : ["single"];
  const section = byTestId("unit");
  const prompt = byTestId("prompt");
  const zoomButton = byTestId("zoom");
  const frames = sides.map((side) => byTestId(`frame-${side}`));
  const imagesBox = frames[0].closest(".ws-images");
  let shown = null;
  let shownAt = 0;
  let paintedAt = null;
  let token = 0;
  let zoomed = false;
  let pairRatio = 0;

  function drawImages() {
    const drawn = [];
    let tallest = 0;
    sides.forEach((side, index) => {
      const frame = frames[index];
      const image = shown.images?.[index];
      if (!image) {
        frame.replaceChildren(el("p", { class: "ws-frame-note", text: "No image for this unit." }));
        return;
      }
      const img = el("img", {
        src: zoomed && image.url ? image.url : image.preview_url,
        alt: ALT[side],
        width: image.width,
        height: image.height,
        draggable: "false",
        "data-testid": `image-${side}`,
      });
      // The CSS fits the picture with these (workspace.css), without reading the layout here.
      const aspect = image.width > 0 && image.height > 0 ? image.width / image.height : 1;
      img.style.setProperty("--aspect", String(aspect));
      img.style.setProperty("--real-width", `${image.width}px`);
      img.style.setProperty("--real-height", `${image.height}px`);
      tallest = Math.max(tallest, 1 / aspect);
      img.addEventListener("error", () => {
        frame.append(el("p", { class: "ws-frame-note", text: "This image did not load: skip it with S." }));
        onImageError();
      });
      frame.replaceChildren(img);
      drawn.push(img);
    });
    if (tallest && tallest !== pairRatio) {
      pairRatio = tallest; // set only when it changes: it restyles the whole pair
      imagesBox.style.setProperty("--pair-ratio", String(tallest));
    }
    return drawn;
  }

  function setZoom(on) {
    if (zoomed && !on) frames.forEach((frame) => frame.scrollTo(0, 0)); // the fitted picture sits at the origin
    zoomed = on;
    setPressed(zoomButton, on);
    section.classList.toggle("is-zoomed", on);
  }

  /** Zoomed in: scrolls every frame so that `focus` (fractions of the picture) is in its middle. */
  function centreOn(focus) {
    frames.forEach((frame) => {
      frame.scrollLeft = focus.x * frame.scrollWidth - frame.clientWidth / 2;
      frame.scrollTop = focus.y * frame.scrollHeight - frame.clientHeight / 2;
    });
  }

  function toggle(focus = { x: 0.5, y: 0.5 }) {
    if (!shown) return;
    setZoom(!zoomed);
    drawImages();
    if (zoomed) centreOn(focus);
  }

  // Panning: a mouse drags every frame by the same distance, so the pair stays in step; touch and
  // wheel scroll the frame under them natively and the others follow. A click without a drag
  // zooms in on the point clicked, or back out.
  let drag = null;
  let leader = null;
  frames.forEach((frame) => {
    frame.addEventListener("pointerdown", (event) => {
      leader = frame;
      if (!zoomed || event.pointerType !== "mouse" || event.button !== 0) return;
      event.preventDefault();
      drag = { x: event.clientX, y: event.clientY, moved: false };
      frame.setPointerCapture(event.pointerId);
      frame.classList.add("is-panning");
    });
    frame.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      drag.x = event.clientX;
      drag.y = event.clientY;
      frames.forEach((other) => other.scrollBy(-dx, -dy));
    });
    const endDrag = () => {
      frame.classList.remove("is-panning");
      setTimeout(() => (drag = null)); // after the click that ends this drag has been looked at
    };
    frame.addEventListener("pointerup", endDrag);
    frame.addEventListener("pointercancel", endDrag);
    frame.addEventListener("wheel", () => (leader = frame), { passive: true });
    frame.addEventListener("scroll", () => {
      if (!zoomed || drag || leader !== frame) return;
      const x = frame.scrollLeft / Math.max(1, frame.scrollWidth - frame.clientWidth);
      const y = frame.scrollTop / Math.max(1, frame.scrollHeight - frame.clientHeight);
      frames.forEach((other) => {
        if (other === frame) return;
        other.scrollLeft = x * (other.scrollWidth - other.clientWidth);
        other.scrollTop = y * (other.scrollHeight - other.clientHeight);
      });
    }, { passive: true });
    frame.addEventListener("click", (event) => {
      if (drag?.moved) return;
      const img = event.target.closest("img");
      if (!img && !zoomed) return;
      const box = (img || frame).getBoundingClientRect();
      const focus = zoomed ? undefined : {
        x: Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)),
        y: Math.min(1, Math.max(0, (event.clientY - box.top) / box.height)),
      };
      toggle(focus);
    });
  });

  return {
    get shown() {
      return shown;
    },

    /** Milliseconds since the unit on screen was painted (or drawn, if not painted yet). */
    latencyMs() {
      return Math.max(0, Math.round(performance.now() - (paintedAt ?? shownAt)));
    },

    /** Shows `unit`; `onPainted` runs once its images are decoded and on screen. */
    paint(unit, onPainted) {
      const mine = ++token;
      shown = unit;
      setZoom(false);
      prompt.textContent = unit.prompt?.text ?? "";
      const images = drawImages();
      shownAt = performance.now();
      paintedAt = null;
      // Preloaded previews are decoded already: waiting for decode() again would only cost a task
      // hop, and often the next frame.
      const decoded = images.length > 0 && images.length === unit.images?.length
        && unit.images.every((image) => isDecoded(image.preview_url));
      const ready = decoded ? Promise.resolve() : Promise.all(images.map((img) => img.decode().catch(() => {})));
      ready.then(() =>
        afterNextPaint(() => {
          if (mine !== token) return; // a later unit replaced this one first
          paintedAt = performance.now();
          performance.mark("unit-painted", { detail: { assignment: unit.assignment } });
          onPainted?.();
        }),
      );
    },

    /** Real size and back; `focus` (fractions of the picture) is where to look when zooming in. */
    toggleZoom(focus) {
      toggle(focus);
    },
  };
}
