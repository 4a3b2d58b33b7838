// Audit: who did what from where, and how it ended — filtered by key, action, outcome and
// time, exported as CSV or JSON.
import { h, render } from "../../js/dom.js";
import { toastError } from "../../js/toast.js";
import { downloadAudit, readAudit } from "./requests.js";

const OUTCOMES = [
  ["", "Any outcome"],
  ["ok", "OK"],
  ["refused", "Refused"],
  ["failed", "Failed"],
];

// Outcomes wear the badge colours of the states they resemble.
const OUTCOME_STATE = { ok: "completed", refused: "DEGRADED", failed: "failed" };

// A datetime-local value is the browser's local time: the API wants an instant.
const instant = (value) => (value ? new Date(value).toISOString() : "");

function row(e) {
  return h(
    "tr",
    { dataset: { outcome: e.outcome } },
    h("td", { class: "mono" }, new Date(e.ts).toLocaleString()),
    h("td", {}, e.actor),
    h("td", { class: "mono" }, e.client),
    h("td", { class: "mono" }, `${e.method} ${e.path}`),
    h("td", { class: "num" }, String(e.status)),
    h(
      "td",
      {},
      h("span", { class: "badge", dataset: { state: OUTCOME_STATE[e.outcome] } }, e.outcome),
    ),
    h("td", {}, e.detail || ""),
    h("td", { class: "num" }, e.count > 1 ? `×${e.count}` : ""),
  );
}

export default {
  async mount(root) {
    const field = (name, attrs) => h("input", { name, autocomplete: "off", ...attrs });
    const inputs = {
      key: field("key", { type: "search", placeholder: "Key or user" }),
      action: field("action", { type: "search", placeholder: "Action, e.g. POST /api/models" }),
      outcome: h(
        "select",
        { name: "outcome" },
        OUTCOMES.map(([value, label]) => h("option", { value }, label)),
      ),
      since: field("since", { type: "datetime-local", "aria-label": "Since" }),
      until: field("until", { type: "datetime-local", "aria-label": "Until" }),
    };
    const filter = () => ({
      key: inputs.key.value.trim(),
      action: inputs.action.value.trim(),
      outcome: inputs.outcome.value,
      since: instant(inputs.since.value),
      until: instant(inputs.until.value),
    });
    const sub = h("p", { class: "page-sub" }, "Reading…");
    const body = h("tbody", { id: "audit-rows" });
    let asked = 0;
    async function load() {
      const mine = ++asked;
      try {
        const { entries } = await readAudit(filter());
        if (mine !== asked) return; // a newer filter's answer wins
        sub.textContent = `${entries.length} ${entries.length === 1 ? "entry" : "entries"}${entries.length === 500 ? " (the newest 500: export for all)" : ""}`;
        render(
          body,
          entries.length
            ? entries.map(row)
            : h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No entry matches.")),
        );
      } catch (err) {
        toastError(err);
      }
    }
    const exporter = (format) => () => downloadAudit(filter(), format).catch(toastError);
    let soon = null;
    const loadSoon = () => {
      clearTimeout(soon);
      soon = setTimeout(load, 250);
    };
    for (const input of Object.values(inputs)) {
      input.addEventListener(input.tagName === "SELECT" ? "change" : "input", loadSoon);
    }
    const button = (label, attrs) => h("button", { class: "btn", type: "button", ...attrs }, label);
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Audit"), sub),
        h(
          "div",
          { class: "toolbar" },
          button("Refresh", { onclick: load }),
          button("Export CSV", { id: "audit-csv", onclick: exporter("csv") }),
          button("Export JSON", { id: "audit-json", onclick: exporter("json") }),
        ),
      ),
      h(
        "div",
        { class: "panel filters" },
        inputs.key,
        inputs.action,
        inputs.outcome,
        h("label", { class: "inline-label" }, "Since ", inputs.since),
        h("label", { class: "inline-label" }, "Until ", inputs.until),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Time", "Actor", "Client", "Action", "Status", "Outcome", "Detail", "Count"].map(
                (label) => h("th", {}, label),
              ),
            ),
          ),
          body,
        ),
      ),
    );
    await load();
    return () => clearTimeout(soon);
  },
};
