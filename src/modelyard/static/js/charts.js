// Time-series charts with uPlot (static/vendor/uplot, shipped as published): loaded once, on
// the first chart, as a classic script (it is an IIFE that defines window.uPlot).
import { get } from "./api.js";

let loading = null;

function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  loading ??= new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    // Beside this module, so under the same versioned (cached for good) path.
    css.href = new URL("../vendor/uplot/uPlot.min.css", import.meta.url).href;
    document.head.append(css);
    const script = document.createElement("script");
    script.src = new URL("../vendor/uplot/uPlot.iife.min.js", import.meta.url).href;
    script.onload = () => resolve(window.uPlot);
    script.onerror = () => reject(new Error("the chart library did not load"));
    document.head.append(script);
  });
  return loading;
}

/** Series from the history API: {resolution_s, series: {name: [[ts, value], ...]}}. */
export function readHistory(names, range) {
  const params = new URLSearchParams({ range });
  for (const name of names) params.append("series", name);
  return get(`/api/history?${params}`);
}

/**
 * A chart of one or more series over time in `el` (its previous chart replaced).
 * `lines`: [{name, label, color}]; `history`: the API's answer; `opts.step` draws steps
 * (an up/down timeline); `opts.format` formats values on the axis; `opts.span` (seconds) shows
 * the whole range up to now, however few points there are (a sparse series).
 */
export async function drawChart(el, lines, history, opts = {}) {
  const uPlot = await loadUplot();
  const times = [...new Set(lines.flatMap((l) => history.series[l.name].map((p) => p[0])))].sort(
    (a, b) => a - b,
  );
  const columns = lines.map((l) => {
    const byTime = new Map(history.series[l.name]);
    return times.map((t) => byTime.get(t) ?? null);
  });
  el.textContent = "";
  const width = Math.max(240, el.clientWidth || 480);
  const paths = opts.step ? uPlot.paths.stepped({ align: 1 }) : undefined;
  const now = Date.now() / 1000;
  const chart = new uPlot(
    {
      width,
      height: opts.height || 160,
      legend: { show: lines.length > 1 || Boolean(opts.legend) },
      scales: {
        x: opts.span ? { time: true, range: () => [now - opts.span, now] } : { time: true },
        y: opts.range ? { range: opts.range } : {},
      },
      axes: [{}, { size: 60, values: opts.format ? (_, ticks) => ticks.map(opts.format) : null }],
      series: [
        {},
        ...lines.map((l) => ({
          label: l.label,
          stroke: l.color,
          width: 2,
          fill: opts.step ? `${l.color}33` : undefined,
          paths,
          spanGaps: false,
        })),
      ],
    },
    [times, ...columns],
    el,
  );
  el.dataset.points = String(times.length);
  return chart;
}
