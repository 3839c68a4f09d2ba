// The filter-run report's charts: one Vega-Lite spec per chart, drawn by vega-embed (vendored, see
// vendor/README.md) from the rows the page carries in <script id="report-charts" type="application/json">
// (frontend/report_chart_data.py writes them). Every element with data-chart="<name>" gets the chart of
// that name; the tables beside the charts hold the same figures for anyone who cannot see them.
//
// Vega compiles its expressions with `new Function` unless it is handed an interpreter; the page's
// CSP forbids eval, so every chart is parsed to an AST (`ast: true`) and run by vega-interpreter.
import { expressionInterpreter } from "vega-interpreter";

const BLUE = "#0b5cad";
const RED = "#a40e26";
const INK = "#1f2328";
const MUTED = "#57606a";
const USED = "used by this run";
const LEFT_OUT = "left out by this run";
const ROW = 26; // px per row of a chart with one row per rater, aspect or judge

// Text at 12 px or more everywhere, at any width: the charts fit their container instead of scaling.
const CONFIG = {
  font: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  axis: { labelFontSize: 12, titleFontSize: 13, labelColor: INK, titleColor: INK, titleFontWeight: 600,
          labelLimit: 180, gridColor: "#eaeef2" },
  legend: { labelFontSize: 12, titleFontSize: 13, titleColor: INK, labelColor: INK, orient: "bottom",
            labelLimit: 260 },
  text: { fontSize: 12, color: INK },
  view: { stroke: null },
};

const EMBED_OPTIONS = {
  renderer: "svg",
  actions: false,
  defaultStyle: false, // an injected <style> would break the CSP; report.css has what is needed
  ast: true,
  expr: expressionInterpreter,
  tooltip: { disableDefaultStyle: true },
};

const STATUS_COLOUR = {
  field: "status", type: "nominal", title: "In this run",
  scale: { domain: [USED, LEFT_OUT], range: [BLUE, RED] },
};

// A fixed height for a chart of `rows` rows: Vega-Lite fits only the width to the container, and a
// discrete ("step") height would make it drop that fit (and say so in the console).
function rowsHigh(rows, step = ROW) {
  return Math.max(rows, 1) * step;
}

function base(values, spec) {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    autosize: { type: "fit-x", contains: "padding" },
    config: CONFIG,
    data: { values },
    ...spec,
  };
}

function reliability({ points, labelled }) {
  const x = { field: "judgments", type: "quantitative", title: "judgments made", scale: { zero: true, nice: true } };
  const y = { field: "agreement", type: "quantitative", title: "agreement with the others' consensus",
              scale: { domain: [0, 1] } };
  const layers = [{
    mark: { type: "point", filled: true, size: 90, opacity: 0.85 },
    encoding: {
      x, y,
      color: STATUS_COLOUR,
      shape: { field: "status", type: "nominal", title: "In this run",
               scale: { domain: [USED, LEFT_OUT], range: ["circle", "triangle-up"] } },
      tooltip: [
        { field: "raters", title: "annotator" },
        { field: "judgments", type: "quantitative", title: "judgments", format: "," },
        { field: "agreement", type: "quantitative", title: "agreement", format: ".3f" },
        { field: "status", title: "in this run" },
        { field: "why", title: "left out because" },
      ],
    },
  }];
  if (labelled) {
    layers.push({
      mark: { type: "text", align: "left", baseline: "middle", dx: 8, fontSize: 12 },
      encoding: { x, y, text: { field: "label" }, color: { value: INK } },
    });
  }
  return base(points, { height: 280, layer: layers });
}

function strength(bins) {
  return base(bins, {
    height: 220,
    mark: { type: "bar", color: BLUE, binSpacing: 1 },
    encoding: {
      x: { field: "low", type: "quantitative", bin: { binned: true, step: bins.length ? bins[0].high - bins[0].low : 0.1 },
           title: "mean strength (consensus side)", axis: { format: "+.1f" } },
      x2: { field: "high" },
      y: { field: "units", type: "quantitative", title: "units" },
      tooltip: [
        { field: "low", type: "quantitative", title: "strength from", format: "+.2f" },
        { field: "high", type: "quantitative", title: "to", format: "+.2f" },
        { field: "units", type: "quantitative", title: "units", format: "," },
      ],
    },
  });
}

// Alpha per aspect with its 95% interval (pairwise agreement, or z-scored aspect scores): the aspect's
// label on the axis, a bar from 0, the interval as a whisker; an aspect without alpha says so in its row.
function aspectAlpha(rows, title, counted) {
  const lowest = Math.min(0, ...rows.flatMap((r) => [r.alpha, r.low]).filter((v) => v !== null));
  const y = { field: "aspect", type: "nominal", sort: null, title: "aspect", axis: { labelLimit: 200 } };
  const tooltip = [
    { field: "aspect", title: "aspect" },
    { field: "alpha", type: "quantitative", title: "alpha", format: ".3f" },
    { field: "low", type: "quantitative", title: "95% interval from", format: ".3f" },
    { field: "high", type: "quantitative", title: "to", format: ".3f" },
    { field: "count", type: "quantitative", title: counted, format: "," },
    { field: "note", title: "note" },
  ];
  const x = { field: "alpha", type: "quantitative", title, scale: { domain: [lowest, 1] } };
  return base(rows, {
    height: rowsHigh(rows.length, ROW + 6),
    layer: [
      { mark: { type: "rule", color: MUTED, strokeDash: [3, 3] },
        data: { values: [{ one: 1 }] }, encoding: { x: { field: "one", type: "quantitative" } } },
      { mark: { type: "bar", color: BLUE, height: { band: 0.6 } },
        transform: [{ filter: "datum.alpha !== null" }],
        encoding: { x, y, tooltip } },
      { mark: { type: "rule", color: INK, strokeWidth: 2 },
        transform: [{ filter: "datum.low !== null && datum.high !== null" }],
        encoding: { x: { field: "low", type: "quantitative" }, x2: { field: "high" }, y, tooltip } },
      { mark: { type: "text", align: "left", dx: 4, color: MUTED, fontSize: 12, limit: 240 },
        transform: [{ filter: "datum.alpha === null" }],
        encoding: { x: { datum: 0, type: "quantitative" }, y, text: { field: "note" }, tooltip } },
    ],
  });
}

function biasShare(rows) {
  const y = { field: "rater", type: "nominal", sort: null, title: "annotator" };
  const tooltip = [
    { field: "rater", title: "annotator" },
    { field: "left_share", type: "quantitative", title: "left share", format: ".2f" },
    { field: "share_low", type: "quantitative", title: "95% interval from", format: ".2f" },
    { field: "share_high", type: "quantitative", title: "to", format: ".2f" },
    { field: "p", title: "binomial test" },
    { field: "status", title: "in this run" },
  ];
  const x = { field: "left_share", type: "quantitative", title: "share of choices for the left image",
              scale: { domain: [0, 1] } };
  return base(rows, {
    height: rowsHigh(rows.length),
    layer: [
      { mark: { type: "rule", color: MUTED, strokeDash: [3, 3] },
        data: { values: [{ half: 0.5 }] }, encoding: { x: { field: "half", type: "quantitative" } } },
      { mark: { type: "rule", color: INK },
        transform: [{ filter: "datum.share_low !== null && datum.share_high !== null" }],
        encoding: { x: { field: "share_low", type: "quantitative", scale: { domain: [0, 1] }, title: x.title },
                    x2: { field: "share_high" }, y, tooltip } },
      { mark: { type: "point", filled: true, size: 70 },
        transform: [{ filter: "datum.left_share !== null" }],
        encoding: { x, y, color: STATUS_COLOUR, tooltip } },
    ],
  });
}

function biasAdvantage(rows) {
  const defined = rows.filter((r) => r.advantage !== null);
  const reach = Math.max(0.5, ...defined.map((r) => Math.abs(r.advantage_low ?? r.advantage)),
                         ...defined.map((r) => Math.abs(r.advantage_high ?? r.advantage)));
  const title = "left advantage (log-odds, Bradley-Terry, ±1.96 se)";
  const y = { field: "rater", type: "nominal", sort: null, title: "annotator" };
  const domain = [-reach, reach];
  const tooltip = [
    { field: "rater", title: "annotator" },
    { field: "advantage", type: "quantitative", title: "left advantage", format: "+.2f" },
    { field: "se", type: "quantitative", title: "standard error", format: ".2f" },
    { field: "status", title: "in this run" },
  ];
  return base(rows, {
    height: rowsHigh(rows.length),
    layer: [
      { mark: { type: "rule", color: MUTED, strokeDash: [3, 3] },
        data: { values: [{ zero: 0 }] }, encoding: { x: { field: "zero", type: "quantitative" } } },
      { mark: { type: "rule", color: INK },
        transform: [{ filter: "datum.advantage_low !== null" }],
        encoding: { x: { field: "advantage_low", type: "quantitative", scale: { domain }, title },
                    x2: { field: "advantage_high" }, y, tooltip } },
      { mark: { type: "point", filled: true, size: 70 },
        transform: [{ filter: "datum.advantage !== null" }],
        encoding: { x: { field: "advantage", type: "quantitative", scale: { domain }, title }, y,
                    color: STATUS_COLOUR, tooltip } },
    ],
  });
}

// The heat map prints each cell's `text`, the very string its table prints.
function matrix({ labels, cells }) {
  const x = { field: "column", type: "nominal", sort: labels, title: null,
              axis: { orient: "bottom", labelAngle: -40, labelAlign: "right", labelLimit: 200 } };
  const y = { field: "row", type: "nominal", sort: labels, title: null, axis: { labelLimit: 220 } };
  const tooltip = [
    { field: "row", title: "judge" },
    { field: "column", title: "against" },
    { field: "text", title: "agreement" },
    { field: "shared", type: "quantitative", title: "units both decided", format: "," },
  ];
  return base(cells, {
    height: rowsHigh(labels.length, 36),
    encoding: { x, y },
    layer: [
      { mark: { type: "rect", stroke: "#ffffff" },
        encoding: {
          color: { condition: { test: "datum.agreement === null", value: "#ffffff" },
                   field: "agreement", type: "quantitative", title: "agreement",
                   scale: { domain: [0, 1], scheme: "blues" }, legend: { orient: "right", gradientLength: 120 } },
          tooltip,
        } },
      { mark: { type: "text", fontSize: 13 },
        encoding: {
          text: { field: "text" },
          color: { condition: { test: "datum.agreement !== null && datum.agreement > 0.6", value: "#ffffff" },
                   value: INK },
          tooltip,
        } },
    ],
  });
}

function machineScores(rows) {
  return base(rows, {
    height: rowsHigh(new Set(rows.map((r) => r.pair)).size),
    mark: { type: "point", filled: true, size: 80 },
    encoding: {
      y: { field: "pair", type: "nominal", sort: null, title: "judge · aspect", axis: { labelLimit: 240 } },
      x: { field: "value", type: "quantitative", title: "correlation with mean human scores",
           scale: { domain: [-1, 1] } },
      color: { field: "measure", type: "nominal", title: "measure", scale: { domain: ["PLCC", "SRCC"], range: [BLUE, "#bc4c00"] } },
      shape: { field: "measure", type: "nominal", title: "measure", scale: { domain: ["PLCC", "SRCC"], range: ["circle", "square"] } },
      tooltip: [
        { field: "judge", title: "judge" },
        { field: "aspect", title: "aspect" },
        { field: "measure", title: "measure" },
        { field: "value", type: "quantitative", title: "correlation", format: ".3f" },
        { field: "p", title: "test" },
        { field: "images", type: "quantitative", title: "images", format: "," },
      ],
    },
  });
}

const CHARTS = {
  reliability: (data) => reliability(data.reliability),
  strength: (data) => strength(data.strength),
  agreement: (data) => aspectAlpha(data.agreement, "Krippendorff's alpha", "judgments"),
  "bias-share": (data) => biasShare(data.bias),
  "bias-advantage": (data) => biasAdvantage(data.bias),
  matrix: (data) => matrix(data.matrix),
  aspect_scores: (data) => aspectAlpha(data.aspect_scores, "alpha of per-annotator z-scores", "scores"),
  machine_scores: (data) => machineScores(data.machine_scores),
};

async function draw(container, data) {
  const name = container.dataset.chart;
  const spec = CHARTS[name];
  if (spec === undefined) {
    throw new Error(`no chart named ${name}`);
  }
  await window.vegaEmbed(container, spec(data), EMBED_OPTIONS);
  container.dataset.drawn = "true";
}

async function drawAll() {
  const source = document.getElementById("report-charts");
  const containers = [...document.querySelectorAll("[data-chart]")];
  if (source === null || containers.length === 0) {
    return;
  }
  const data = JSON.parse(source.textContent);
  await Promise.all(containers.map((container) => draw(container, data).catch((error) => {
    container.dataset.failed = `This chart could not be drawn (${error.message}); the table has its figures.`;
    console.error(`chart ${container.dataset.chart}:`, error);
  })));
}

// Tests and the bench wait for this mark (and the attribute) to know every chart is on screen.
drawAll().finally(() => {
  performance.mark("report-charts-drawn");
  document.body.dataset.chartsDrawn = "true";
});
