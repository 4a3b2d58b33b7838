// The model picker: the models that can chat, grouped by provider and instance; the choice
// is remembered for new chats and switches the model of an open one.
import { ApiError } from "../../js/api.js";
import { h, render } from "../../js/dom.js";
import { kindLabel, LOCAL_FILES } from "../../js/kinds.js";
import { toast, toastError } from "../../js/toast.js";
import { listModels, updateConversation } from "./requests.js";

export const LAST_MODEL = "modelyard.chat.model";
const USABLE = new Set(["available", "loaded", "starting"]);

/** A stable key for a model of the picker. */
export function modelKey(m) {
  return JSON.stringify([m.provider, m.instance_id || "", m.name]);
}

function groupLabel(provider, instanceId, instancesOfProvider) {
  const label = kindLabel(provider);
  if (instanceId === LOCAL_FILES) return `${label} · models folder`;
  return instancesOfProvider > 1 && instanceId ? `${label} · ${instanceId}` : label;
}

/** Read the models that can chat (drawn by the caller). */
export async function readModels(chat) {
  try {
    const { models } = await listModels();
    chat.s.models = models.filter(
      (m) => (m.mode || "llm") === "llm" && USABLE.has(m.status || "available"),
    );
  } catch (err) {
    chat.s.models = [];
    if (!(err instanceof ApiError && err.status === 404)) toastError(err);
  }
}

export async function loadModels(chat) {
  await readModels(chat);
  drawPicker(chat);
}

/** The open chat's model, else the remembered one, a loaded one, the first one, or null. */
export function chosenModel(chat) {
  const { current, models, choice } = chat.s;
  if (current)
    return { provider: current.provider, instance_id: current.instance_id, name: current.model };
  const remembered = models.find((m) => modelKey(m) === choice);
  return remembered || models.find((m) => m.status === "loaded") || models[0] || null;
}

/** The picker's key of each model, from an index of `models` made once per draw (a search of
 * the whole list per option was quadratic). A GGUF file runs on a server of its own but is
 * catalogued under the models directory's scope, so a chat with it matches that entry. */
function keysIn(models) {
  const byName = new Map();
  for (const x of models) {
    const name = JSON.stringify([x.provider, x.name]);
    if (!byName.has(name)) byName.set(name, []);
    byName.get(name).push(x);
  }
  return (m) => {
    const named = byName.get(JSON.stringify([m.provider, m.name])) || [];
    const found = named.find(
      (x) => x.instance_id === m.instance_id || x.instance_id === LOCAL_FILES,
    );
    return modelKey(found || m);
  };
}

function groups(models) {
  const instances = {};
  for (const m of models) {
    instances[m.provider] ??= new Set();
    instances[m.provider].add(m.instance_id);
  }
  const grouped = new Map();
  for (const m of models) {
    const label = groupLabel(m.provider, m.instance_id, instances[m.provider]?.size || 1);
    if (!grouped.has(label)) grouped.set(label, []);
    grouped.get(label).push(m);
  }
  return grouped;
}

export function drawPicker(chat) {
  const { picker, input } = chat.els;
  const chosen = chosenModel(chat);
  const all = [...chat.s.models];
  if (chosen && !all.some((m) => m.provider === chosen.provider && m.name === chosen.name)) {
    all.unshift(chosen);
  }
  const matchKey = keysIn(chat.s.models);
  const selectedKey = chosen ? matchKey(chosen) : null;
  const option = (m) =>
    h(
      "option",
      { value: modelKey(m), selected: matchKey(m) === selectedKey },
      m.status === "loaded" ? `${m.name} · loaded` : m.name,
    );
  render(
    picker,
    all.length
      ? [...groups(all)].map(([label, items]) => h("optgroup", { label }, items.map(option)))
      : h("option", { value: "" }, "No models yet: get one on the Models page"),
  );
  picker.disabled = !all.length;
  input.placeholder = chosen ? `Message ${chosen.name}…` : "Pick a model first";
}

/** The user picked a model: remember it; switch the open chat to it. */
export async function pickModel(chat) {
  const { picker, input } = chat.els;
  const [provider, instanceId, name] = JSON.parse(picker.value);
  chat.s.choice = picker.value;
  localStorage.setItem(LAST_MODEL, picker.value);
  input.placeholder = `Message ${name}…`;
  if (!chat.s.current) {
    chat.drawMessages();
    return;
  }
  try {
    const body = { provider, model: name };
    if (instanceId) body.instance_id = instanceId;
    const updated = await updateConversation(chat.s.current.id, body);
    Object.assign(chat.s.current, {
      provider: updated.provider,
      instance_id: updated.instance_id,
      model: updated.model,
    });
    toast(`Switched to ${name}`, { kind: "success", timeout: 2000 });
  } catch (err) {
    toastError(err);
    drawPicker(chat);
  }
}
