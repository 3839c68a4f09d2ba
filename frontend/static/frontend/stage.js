// Putting a unit on screen: the prompt as text, the image(s) (preview, or the original when
// zoomed), and the `unit-painted` performance mark once the pictures are decoded and painted.

import { afterNextPaint, byTestId, el, setPressed } from "./dom.js";

const ALT = { left: "Left image", right: "Right image", single: "The image to judge" };

export function createStage({ taskType, onImageError }) {
  const sides = taskType === "pairwise" ? ["left", "right"] : ["single"];
  const section = byTestId("unit");
  const prompt = byTestId("prompt");
  const zoomButton = byTestId("zoom");
  let shown = null;
  let shownAt = 0;
  let paintedAt = null;
  let token = 0;
  let zoomed = false;

  function drawImages() {
    const drawn = [];
    sides.forEach((side, index) => {
      const frame = byTestId(`frame-${side}`);
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
      img.addEventListener("error", () => {
        frame.append(el("p", { class: "ws-frame-note", text: "This image did not load: skip it with S." }));
        onImageError();
      });
      frame.replaceChildren(img);
      drawn.push(img);
    });
    return drawn;
  }

  function setZoom(on) {
    zoomed = on;
    setPressed(zoomButton, on);
    section.classList.toggle("is-zoomed", on);
  }

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
      Promise.all(images.map((img) => img.decode().catch(() => {}))).then(() =>
        afterNextPaint(() => {
          if (mine !== token) return; // a later unit replaced this one first
          paintedAt = performance.now();
          performance.mark("unit-painted", { detail: { assignment: unit.assignment } });
          onPainted?.();
        }),
      );
    },

    toggleZoom() {
      if (!shown) return;
      setZoom(!zoomed);
      drawImages();
    },
  };
}
