// Usage: tokens per day for each key and each model (uPlot, as the System page draws), the
// totals per key and model, and the rows as a CSV download. From GET /api/usage.
import { download, get } from "../../js/api.js";
import { drawChart } from "../../js/charts.js";
import { h, render } from "../../js/dom.js";
import { toastError } from "../../js/toast.js";

const USAGE = "/api/usage";
const DAYS = 30;
const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#1098ad", "#c2255c"];

function query(groups, extra = {}) {
  const since = new Date(Date.now() - (DAYS - 1) * 86400_000).toISOString().slice(0, 10);
  const params = new URLSearchParams({ since, ...extra });
  for (const group of groups) params.append("group", group);
  return `${USAGE}?${params}`;
}

/** The rows of one grouping as the chart module's history: a series per `label(row)`. */
function history(rows, label) {
  const series = {};
  for (const row of rows) {
    const at = Date.parse(`${row.day}T00:00:00Z`) / 1000;
    const name = label(row);
    if (!series[name]) series[name] = [];
    series[name].push([at, row.prompt_tokens + row.completion_tokens]);
  }
  return { series };
}

async function chart(el, rows, label) {
  const data = history(rows, label);
  const names = Object.keys(data.series).sort();
  if (!names.length) {
    render(el, h("p", { class: "empty" }, "No usage in the last 30 days."));
    return;
  }
  const lines = names.map((name, i) => ({ name, label: name, color: COLORS[i % COLORS.length] }));
  await drawChart(el, lines, data, { legend: true, format: (v) => `${v}` });
}

function totalsRow(row) {
  return h(
    "tr",
    { dataset: { prefix: row.key_prefix, model: row.model } },
    h("td", { class: "mono" }, row.key_id ? `${row.key_prefix}…` : row.key_prefix),
    h("td", { class: "mono" }, row.model),
    h("td", { class: "num" }, String(row.requests)),
    h("td", { class: "num" }, String(row.errors)),
    h("td", { class: "num" }, String(row.prompt_tokens)),
    h("td", { class: "num" }, String(row.completion_tokens)),
    h("td", { class: "num" }, row.ttft_ms_avg === null ? "–" : `${row.ttft_ms_avg} ms`),
  );
}

export default {
  id: "usage",
  title: "Usage",
  async mount(root) {
    const byKey = h("div", { class: "chart", id: "usage-by-key" });
    const byModel = h("div", { class: "chart", id: "usage-by-model" });
    const body = h("tbody", { id: "usage-rows" });
    async function load() {
      const [keys, models, totals] = await Promise.all([
        get(query(["day", "key"])),
        get(query(["day", "model"])),
        get(query(["key", "model"])),
      ]);
      await chart(byKey, keys.usage, (row) => row.key_prefix);
      await chart(byModel, models.usage, (row) => row.model);
      render(
        body,
        totals.usage.length
          ? totals.usage.map(totalsRow)
          : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No request yet.")),
      );
    }
    const button = (label, attrs) => h("button", { class: "btn", type: "button", ...attrs }, label);
    root.append(
      h(
        "div",
        { class: "toolbar" },
        button("Refresh", { onclick: () => load().catch(toastError) }),
        button("Download CSV", {
          id: "usage-csv",
          onclick: () => download(query([], { format: "csv" }), "usage.csv").catch(toastError),
        }),
      ),
      h("h3", {}, "Tokens per day, by key"),
      byKey,
      h("h3", {}, "Tokens per day, by model"),
      byModel,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "usage-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Key", "Model", "Requests", "Errors", "Prompt", "Completion", "TTFT avg"].map(
                (text) => h("th", {}, text),
              ),
            ),
          ),
          body,
        ),
      ),
    );
    await load();
  },
};
