// What the scheduler says of each instance's models (docs/GATEWAY.md): loaded, loading or
// queued, requests in flight, time left before an idle unload, why it last left memory. Live
// from model.schedule events; the words are the Models page's (scheduleNote).
import { h } from "../../js/dom.js";
import { scheduleNote } from "../models/cells.js";
import { modelSchedule } from "../models/requests.js";

const LOCAL = "local"; // the pseudo-instance of the models directory's files

/** The scheduler's views, keyed provider/instance/name (null when it cannot be read). */
export async function loadSchedule() {
  const found = await modelSchedule().catch(() => null);
  if (!found) return null;
  const seenAt = Date.now();
  return new Map(found.models.map((v) => [v.key, { ...v, seenAt }]));
}

function split(key) {
  const [provider, instanceId, ...rest] = key.split("/");
  return { provider, instance_id: instanceId, name: rest.join("/") };
}

/** Whether `inst` runs the model of `m`: one of its own, or the local file its server serves. */
function serves(inst, m) {
  if (m.provider !== inst.provider) return false;
  if (m.instance_id === inst.id) return true;
  const path = inst.model || "";
  return m.instance_id === LOCAL && (path === m.name || path.endsWith(`/${m.name}`));
}

/** The keys of the instances whose models' views `view` changes (for a redraw of their cards). */
export function instancesOf(instances, key) {
  const m = split(key);
  return [...instances.values()].filter((inst) => serves(inst, m));
}

/** The section of `inst`'s card: one line per model the scheduler has seen of it. */
export function scheduleSection(page, inst) {
  const views = [...page.state.schedule.values()]
    .map((view) => ({ view, m: split(view.key) }))
    .filter(({ m }) => serves(inst, m));
  if (!views.length) return null;
  return h(
    "div",
    { class: "schedule", "data-testid": "scheduler" },
    views.map(({ view, m }) =>
      h(
        "div",
        { class: "schedule-row", dataset: { model: m.name, state: view.state } },
        h("span", { class: "mono" }, m.name),
        " ",
        h("span", { class: "badge", dataset: { state: view.state } }, view.state),
        scheduleNote(page, m),
      ),
    ),
  );
}
