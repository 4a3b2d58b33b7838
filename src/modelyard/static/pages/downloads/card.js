// One download as a card: what, from where, its state, progress, numbers, error, actions, log.
import { h } from "../../js/dom.js";
import { bytes, duration, rate } from "../../js/format.js";
import { sourceLabel } from "../../js/kinds.js";

export const ACTIVE = new Set(["queued", "downloading", "verifying", "paused"]);
export const RUNNING = new Set(["downloading", "verifying"]);

export const nameOf = (t) => t.model_name || t.filename || t.url || t.id;

function where(t) {
  return t.source === "ollama" ? `into ollama/${t.instance_id}` : t.url;
}

/** "3.1 MB of 12 MB · 25.0% · 1.0 MB/s · 9s left · attempt 2". A total that may still grow
 * (a pull's layers are learnt one by one) is shown as a floor: "of at least 12 MB". */
export function numbers(t) {
  const atLeast = t.total_final ? "" : "at least ";
  const parts = [
    t.total ? `${bytes(t.downloaded)} of ${atLeast}${bytes(t.total)}` : bytes(t.downloaded),
  ];
  parts.push(`${t.progress.toFixed(1)}%`);
  if (t.state === "downloading") {
    parts.push(rate(t.speed_bps));
    if (t.eta_s !== null && t.eta_s !== undefined) parts.push(`${duration(t.eta_s)} left`);
  }
  if (t.total_layers) parts.push(`layer ${t.current_layer} of ${atLeast}${t.total_layers}`);
  if (t.attempts > 1) parts.push(`attempt ${t.attempts}`);
  return parts.join(" · ");
}

/** What an Ollama pull says it is doing ("pulling manifest"), while it runs. */
export function statusLine(t) {
  return t.source === "ollama" && ACTIVE.has(t.state) && t.current_status ? t.current_status : "";
}

function actionButtons(t, { busy, logOpen, onAction }) {
  const button = (action, label, extra = {}) =>
    h(
      "button",
      {
        class: `btn btn-small${action === "delete" ? " btn-danger" : ""}`,
        "data-action": action,
        disabled: busy,
        onclick: () => onAction(t, action),
        ...extra,
      },
      label,
    );
  return [
    t.state === "queued" || RUNNING.has(t.state) ? button("pause", "Pause") : null,
    t.state === "paused" ? button("resume", "Resume") : null,
    ACTIVE.has(t.state) ? button("cancel", "Cancel") : null,
    t.state === "failed" || t.state === "cancelled" ? button("retry", "Retry") : null,
    button("log", logOpen ? "Hide log" : "Log", { "aria-expanded": String(logOpen) }),
    button("delete", "Delete"),
  ];
}

function progressBar(t) {
  return h(
    "div",
    {
      class: "progress",
      dataset: { state: t.state },
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(t.progress),
    },
    h("span", { style: { width: `${t.progress}%` } }),
  );
}

function errorLine(t) {
  if (!t.error) return null;
  return h(
    "div",
    { class: "reason", dataset: { state: "ERROR" }, "data-testid": "error" },
    t.error_code ? [h("code", {}, t.error_code), " — "] : null,
    t.error,
  );
}

/** The card of task `t`; `log` is its open log viewer's element, or undefined. */
export function downloadCard(t, { busy, log, onAction }) {
  const sub = [sourceLabel(t.source), t.mode !== "llm" ? t.mode : null, where(t)];
  return h(
    "article",
    { class: "panel card download-card", dataset: { id: t.id, state: t.state } },
    h(
      "div",
      { class: "card-head" },
      h(
        "div",
        { class: "grow" },
        h("div", { class: "card-title" }, nameOf(t)),
        h("div", { class: "card-sub" }, sub.filter(Boolean).join(" · ")),
      ),
      t.verified === false
        ? h(
            "span",
            {
              class: "badge plain",
              "data-testid": "not-verified",
              title: "It was already there with the server's size: neither fetched nor checked",
            },
            "not verified",
          )
        : null,
      h("span", { class: "badge", dataset: { state: t.state }, "data-testid": "state" }, t.state),
    ),
    progressBar(t),
    h("div", { class: "download-numbers", "data-testid": "numbers" }, numbers(t)),
    h("div", { class: "muted small", "data-testid": "status" }, statusLine(t)),
    t.path && t.state === "completed" ? h("div", { class: "muted small mono" }, t.path) : null,
    errorLine(t),
    h(
      "div",
      { class: "card-actions" },
      actionButtons(t, { busy, logOpen: Boolean(log), onAction }),
    ),
    log ? h("div", { class: "card-extra", "data-testid": "log" }, log) : null,
  );
}

/** Progress within one state changes numbers only: update them in place, so the buttons
 * under the pointer are not swapped out four times a second. */
export function patchCard(el, t) {
  const bar = el.querySelector(".progress");
  bar.setAttribute("aria-valuenow", String(t.progress));
  bar.firstElementChild.style.width = `${t.progress}%`;
  el.querySelector('[data-testid="numbers"]').textContent = numbers(t);
  el.querySelector('[data-testid="status"]').textContent = statusLine(t);
}
