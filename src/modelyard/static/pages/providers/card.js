// One instance as a card: its true state, the three checks, facts, the reason it is not
// running, and what can be done with it.
import { h } from "../../js/dom.js";
import { ago, ms } from "../../js/format.js";

export const instanceKey = (s) => `${s.provider}/${s.id ?? s.instance_id}`;

function mark(value) {
  if (value === null || value === undefined) return h("span", { class: "check-na" }, "–");
  return value ? h("span", { class: "check-ok" }, "✓") : h("span", { class: "check-bad" }, "✗");
}

function checks(inst, s) {
  return h(
    "div",
    { class: "checks", "data-testid": "checks" },
    h(
      "span",
      {},
      "PID ",
      inst.managed ? mark(s?.pid_exists) : h("span", { class: "check-na" }, "–"),
    ),
    h("span", {}, "Port ", mark(s?.port_listening)),
    h("span", {}, "API ", mark(s?.api_responding)),
  );
}

// The policy (the instance's own, or the default) and how often it has restarted the process.
function restartText(inst, s) {
  const policy = inst.restart ?? "default";
  const count = s?.restarts ?? 0;
  return count ? `${policy} · restarted ${count}×` : policy;
}

// The limit and how it is held: by the kernel (a cgroup) or sampled by a watchdog, as the
// running process was started; a stopped one's limit applies from its next start.
function memoryLimitText(inst, s) {
  const mib = (n) => `${Math.round(n / 2 ** 20)} MiB`; // as the form takes it
  const running = s?.memory_limit_bytes;
  if (!running) return `${mib(inst.memory_limit_bytes)} · from the next start`;
  const how = s.memory_enforcement ?? "";
  const held = how.startsWith("cgroup") ? `enforced (${how})` : `watched (${how || "watchdog"})`;
  return `${mib(running)} · ${held}`;
}

function facts(inst, s) {
  const pair = (term, value, cls, testid) => [
    h("dt", {}, term),
    h("dd", { class: cls, "data-testid": testid }, value),
  ];
  const known = (v) => v !== null && v !== undefined;
  return h(
    "dl",
    { class: "kv" },
    pair("Version", s?.version || "—"),
    pair("Latency", ms(s?.latency_ms)),
    known(s?.models_loaded) ? pair("Models loaded", String(s.models_loaded)) : null,
    s?.pid ? pair("PID", String(s.pid), "mono") : null,
    s?.container ? pair("Container", `${s.container.name} · ${s.container.status}`, "mono") : null,
    inst.image ? pair("Image", s?.container?.image || inst.image, "mono") : null,
    s?.container?.restart_count ? pair("Restarts", String(s.container.restart_count)) : null,
    inst.managed && !inst.image ? pair("Restart", restartText(inst, s), "", "restarts") : null,
    inst.managed && !inst.image && (inst.memory_limit_bytes || s?.memory_limit_bytes)
      ? pair("Memory limit", memoryLimitText(inst, s), "", "memory-limit")
      : null,
    inst.model ? pair("Model", inst.model, "mono") : null,
    pair("Checked", s ? ago(s.checked_at) : "not yet"),
  );
}

function reason(s, state) {
  if (!s || state === "RUNNING" || !(s.reason_code || s.hint)) return null;
  return h(
    "div",
    { class: "reason", dataset: { state }, "data-testid": "reason" },
    s.reason_code ? h("code", {}, s.reason_code) : null,
    s.reason_code && s.hint ? " — " : "",
    s.hint || "",
  );
}

function actionButtons(page, inst, s, state) {
  const k = instanceKey(inst);
  const busy = page.state.busy.has(k);
  const open = page.state.open.get(k);
  const button = (label, attrs) => h("button", { class: "btn btn-small", ...attrs }, label);
  const control = (action, disabled) =>
    button(action[0].toUpperCase() + action.slice(1), {
      disabled,
      "data-action": action,
      onclick: () => page.control(inst, action),
    });
  const running = ["RUNNING", "STARTING", "DEGRADED"].includes(state) || s?.pid_exists;
  const panel = (what, label) =>
    button(label, { onclick: () => page.toggle(k, what), "aria-expanded": open === what });
  return [
    inst.managed ? control("start", busy || running) : null,
    inst.managed ? control("stop", busy || !running) : null,
    inst.managed ? control("restart", busy) : null,
    panel("history", "History"),
    inst.managed ? panel("logs", "Logs") : null,
    inst.image ? panel("container", "Container") : null,
    inst.deletable
      ? button("Edit", { onclick: () => page.edit(inst), "data-action": "edit" })
      : null,
    inst.deletable
      ? h(
          "button",
          { class: "btn btn-small btn-danger", onclick: () => page.remove(inst) },
          "Remove",
        )
      : null,
  ];
}

/** The card of `inst`; `extra` is its open History or Logs panel (or null). */
export function instanceCard(page, inst, extra) {
  const s = page.state.statuses.get(instanceKey(inst));
  const state = s?.state ?? "UNKNOWN";
  return h(
    "article",
    { class: "panel card", dataset: { key: instanceKey(inst), state } },
    h(
      "div",
      { class: "card-head" },
      h(
        "div",
        { class: "grow" },
        h("div", { class: "card-title" }, `${inst.label} · ${inst.id}`),
        h("div", { class: "card-sub" }, inst.base_url, inst.managed ? " · managed" : " · external"),
      ),
      h("span", { class: "badge", dataset: { state }, "data-testid": "state" }, state),
    ),
    checks(inst, s),
    facts(inst, s),
    reason(s, state),
    h("div", { class: "card-actions" }, actionButtons(page, inst, s, state)),
    extra,
  );
}
