// A model's use — its answers through the gateway and in chats: answers, tokens/s and time to
// first token over the last hour, day or week — the history's per-model series (docs/API.md,
// "History"), drawn with the System page's chart helper. A model that did not answer in a
// sample has no point there.
import { drawChart, readHistory } from "../../js/charts.js";
import { h } from "../../js/dom.js";
import { section } from "./details.js";
import { scheduleKey } from "./requests.js";

const SPAN_S = { "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
const MEASURES = [
  { measure: "answers_per_s", title: "Answers", color: "#2563eb", format: (v) => `${v}/s` },
  { measure: "tokens_per_s", title: "Tokens/s", color: "#d97706", format: (v) => `${v} t/s` },
  {
    measure: "ttft_ms",
    title: "Time to first token (p50)",
    color: "#7c3aed",
    format: (v) => `${v} ms`,
  },
];

/** The section for model `m`; `load()` (again on a range change) draws its charts. */
export function usageSection(m) {
  const key = scheduleKey(m);
  const charts = MEASURES.map((c) => ({ ...c, name: `model.${key}.${c.measure}` }));
  const range = h(
    "select",
    { name: "usage-range", "aria-label": "Range" },
    h("option", { value: "1h" }, "Last hour"),
    h("option", { value: "24h" }, "Last 24 hours"),
    h("option", { value: "7d" }, "Last 7 days"),
  );
  const boxes = charts.map((c) => h("div", { class: "chart", "data-chart": c.measure }));
  const note = h("p", { class: "muted small" });
  const el = section(
    "Answers (gateway and chat)",
    range,
    charts.map((c, i) => [h("h4", {}, c.title), boxes[i]]),
    note,
  );
  el.dataset.testid = "usage";
  async function load() {
    try {
      const answer = await readHistory(
        charts.map((c) => c.name),
        range.value,
      );
      const lines = (c) => [{ name: c.name, label: c.title, color: c.color }];
      await Promise.all(
        charts.map((c, i) =>
          drawChart(boxes[i], lines(c), answer, {
            format: c.format,
            height: 120,
            span: SPAN_S[range.value],
          }),
        ),
      );
      const answered = answer.series[charts[0].name].length > 0;
      note.textContent = answered
        ? ""
        : "No answer through the gateway or in a chat in this range.";
    } catch (err) {
      note.textContent = err.detail || err.message;
    }
  }
  range.addEventListener("change", () => load());
  return { el, load };
}
