// What modelyard can do with a model — the one rule set of the table, the cards and the
// drawer, matching what the API accepts — read from the provider's capabilities.
import { h } from "../../js/dom.js";
import { can, kindLabel, LOCAL_FILES } from "../../js/kinds.js";

const ALLOW = { ok: true, why: null };
const refuse = (why) => ({ ok: false, why });

/** Why start and stop can never work for `m`, or null. A runtime that loads models on request
 * starts and stops any of them; a server run for one model only when modelyard runs it: a
 * file of the models directory, or the model of a managed instance (`managed`: their
 * "provider/id" keys). */
function neverStartStop(m, managed) {
  if (can(m.provider, "loads_models")) return null;
  const label = kindLabel(m.provider);
  if (!can(m.provider, "manageable")) {
    return `${label} servers load their models themselves: modelyard cannot start or stop them`;
  }
  if (m.instance_id === LOCAL_FILES || managed.has(`${m.provider}/${m.instance_id}`)) return null;
  return `${label} server ${m.instance_id} is not managed by modelyard: start or stop it yourself`;
}

function startRule(m, never, running) {
  if (never) return refuse(never);
  if (m.status === "downloading") return refuse("Wait for the download to finish");
  if (running) return refuse("Already running");
  if (!["available", "failed"].includes(m.status)) return refuse(`The model is ${m.status}`);
  return ALLOW;
}

function deleteRule(m, running) {
  const file = m.instance_id === LOCAL_FILES;
  if (!file && !can(m.provider, "deletes_models")) {
    return refuse(
      `modelyard cannot delete ${kindLabel(m.provider)} models: it deletes the GGUF files ` +
        "of its models directory, and models of servers that delete them",
    );
  }
  if (m.status === "downloading") return refuse("Wait for the download to finish");
  if (file && running) return refuse("Stop the model first");
  return ALLOW;
}

/**
 * Each of start, stop, delete, recreate of model `m` is `{ok, why}` (`why` says why not);
 * `recreate` is null where there is nothing to download again; `primary` is the start/stop
 * button to show.
 */
export function modelRules(m, managed) {
  const running = ["loaded", "starting"].includes(m.status);
  const never = neverStartStop(m, managed);
  const del = deleteRule(m, running);
  const redownloads =
    m.instance_id === LOCAL_FILES ||
    (can(m.provider, "deletes_models") && can(m.provider, "pulls"));
  return {
    start: startRule(m, never, running),
    stop: never ? refuse(never) : running ? ALLOW : refuse("The model is not running"),
    delete: del,
    recreate: redownloads ? del : null,
    primary: running ? "stop" : "start",
  };
}

/**
 * The action buttons of model `m` under `modelRules`: Start or Stop, Delete and (with
 * `recreate`) Recreate. A button that cannot work is disabled, its title says why.
 */
export function actionButtons(m, managed, opts) {
  const { busy = false, recreate = true, emphasis = false, onAction } = opts;
  const rules = modelRules(m, managed);
  const button = (label, action, cls = "") =>
    h(
      "button",
      {
        class: `btn btn-small${cls}`,
        type: "button",
        "data-action": action,
        disabled: busy || !rules[action].ok,
        title: rules[action].why,
        onclick: (ev) => {
          ev.stopPropagation();
          onAction(action);
        },
      },
      label,
    );
  const starting = busy && m.status === "starting";
  return [
    rules.primary === "stop"
      ? button("Stop", "stop")
      : button(starting ? "Starting…" : "Start", "start", emphasis ? " btn-primary" : ""),
    button("Delete", "delete", " btn-danger"),
    recreate && rules.recreate ? button("Recreate", "recreate") : null,
  ];
}
