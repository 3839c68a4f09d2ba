// vega-interpreter is published only as an ES module that imports from "vega-util". The report page's
// import map sends that name here, to the copy of vega-util that the vendored vega.min.js carries, so
// the page loads one Vega and nothing from outside the site.
const { ascending, isString, DisallowedObjectProperties } = globalThis.vega;

export { ascending, isString, DisallowedObjectProperties };
