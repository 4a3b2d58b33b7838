// The container instances with the CPU and memory each uses (Docker's figures).
import { h } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";

function containerRow(c) {
  const running = c.cpu_percent !== null;
  const limit = c.memory_limit_bytes ? ` of ${bytes(c.memory_limit_bytes)}` : "";
  return h(
    "tr",
    { dataset: { key: `${c.provider}/${c.instance_id}` } },
    h("td", {}, `${kindLabel(c.provider)} · ${c.instance_id}`),
    h("td", { class: "mono" }, c.image),
    h("td", {}, c.status),
    h(
      "td",
      { class: "num", "data-testid": "container-cpu" },
      running ? `${c.cpu_percent.toFixed(1)} %` : "—",
    ),
    h("td", { class: "num" }, running ? `${bytes(c.memory_bytes)}${limit}` : "—"),
  );
}

/** The section's table, or null when no instance runs in a container. */
export function containerTable(list) {
  if (!list.length) return null;
  const th = (label, cls) => h("th", { class: cls }, label);
  return h(
    "div",
    { class: "section", id: "containers" },
    h("h2", {}, "Containers"),
    h(
      "div",
      { class: "panel table-wrap system-table" },
      h(
        "table",
        {},
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            th("Instance"),
            th("Image"),
            th("Status"),
            th("CPU", "num"),
            th("Memory", "num"),
          ),
        ),
        h("tbody", {}, list.map(containerRow)),
      ),
    ),
  );
}
