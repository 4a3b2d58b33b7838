// The live request log: each gateway request as it ends, from the events WebSocket's
// `gateway.request`, newest first, the last LIMIT kept. Nothing is read back: the log starts
// when the page opens. Refusals are requests too (a bad key, an unknown model, a limit): their
// status with its code, the model as asked (none when the guards refused before the body).
import { h } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { ms } from "../../js/format.js";

const LIMIT = 200;
const COLUMNS = ["Time", "Model", "Key", "Status", "Queue", "Load", "TTFT", "Tokens/s"];

/** Tokens per second while the answer streamed: the tokens after the first, over the time
 * after the first. Blank for a one-token answer, or one that came in a single burst. */
function tokensPerSecond(e) {
  if (!e.completion_tokens || e.completion_tokens < 2 || e.ttft_ms === null) return "";
  const seconds = (e.duration_ms - e.ttft_ms) / 1000;
  return seconds > 0 ? ((e.completion_tokens - 1) / seconds).toFixed(1) : "";
}

function row(e) {
  const ok = e.status < 400;
  return h(
    "tr",
    { dataset: { model: e.model, status: String(e.status) } },
    h("td", { class: "mono" }, new Date().toLocaleTimeString()),
    h("td", { title: e.key }, e.model || "—"),
    h("td", { class: "mono" }, e.key_prefix || ""),
    h(
      "td",
      {},
      h(
        "span",
        { class: "badge", dataset: { state: ok ? "completed" : "failed" }, title: e.error || "" },
        e.code ? `${e.status} ${e.code}` : String(e.status),
      ),
    ),
    // The wait for a turn includes the load when there was one.
    h("td", { class: "num" }, e.waited_for_load ? "" : ms(e.queue_ms)),
    h("td", { class: "num" }, e.waited_for_load ? ms(e.queue_ms) : ""),
    h("td", { class: "num" }, ms(e.ttft_ms)),
    h("td", { class: "num" }, tokensPerSecond(e)),
  );
}

export default {
  id: "log",
  title: "Live requests",
  mount(root) {
    const body = h("tbody", { id: "gateway-requests" });
    const empty = h(
      "tr",
      { class: "log-empty" },
      h("td", { colspan: COLUMNS.length, class: "empty" }, "No request since this page opened."),
    );
    body.append(empty);
    root.append(
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
              COLUMNS.map((c) => h("th", {}, c)),
            ),
          ),
          body,
        ),
      ),
    );
    return events.on("gateway.request", ({ data }) => {
      empty.remove();
      body.prepend(row(data));
      while (body.rows.length > LIMIT) body.lastElementChild.remove();
    });
  },
};
