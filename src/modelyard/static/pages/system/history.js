// The System page's history: CPU, RAM, download throughput and chat tokens/s over the last
// hour, day or week (kept by modelyard itself: /api/history).
import { drawChart, readHistory } from "../../js/charts.js";
import { h } from "../../js/dom.js";
import { bytes, rate } from "../../js/format.js";

const CHARTS = [
  {
    title: "CPU",
    lines: [{ name: "system.cpu_percent", label: "CPU %", color: "#2563eb" }],
    opts: { range: [0, 100], format: (v) => `${v} %` },
  },
  {
    title: "Memory",
    lines: [{ name: "system.ram_used_bytes", label: "RAM used", color: "#7c3aed" }],
    opts: { format: (v) => bytes(v) },
  },
  {
    title: "Downloads",
    lines: [{ name: "downloads.bytes_per_s", label: "Throughput", color: "#059669" }],
    opts: { format: (v) => rate(v) },
  },
  {
    title: "Chat",
    lines: [{ name: "chat.tokens_per_s", label: "Tokens/s", color: "#d97706" }],
    opts: { format: (v) => `${v} t/s` },
  },
];

export function historySection() {
  const range = h(
    "select",
    { name: "history-range", "aria-label": "Range" },
    h("option", { value: "1h" }, "Last hour"),
    h("option", { value: "24h" }, "Last 24 hours"),
    h("option", { value: "7d" }, "Last 7 days"),
  );
  const boxes = CHARTS.map((c) =>
    h("div", { class: "chart", "data-chart": c.lines[0].name, "aria-label": c.title }),
  );
  const el = h(
    "div",
    { class: "section" },
    h("div", { class: "section-head" }, h("h2", {}, "History"), range),
    h(
      "div",
      { class: "grid chart-grid" },
      CHARTS.map((c, i) => h("div", { class: "panel" }, h("h3", {}, c.title), boxes[i])),
    ),
  );
  async function load() {
    const answer = await readHistory(
      CHARTS.flatMap((c) => c.lines.map((l) => l.name)),
      range.value,
    );
    await Promise.all(CHARTS.map((c, i) => drawChart(boxes[i], c.lines, answer, c.opts)));
  }
  range.addEventListener("change", () => load());
  return { el, load };
}
