// Pull a model from the Ollama library through an instance that pulls.
import { h } from "../../js/dom.js";
import { submitDownload } from "./download.js";

// PROTOCOLS §1.2: [host/][namespace/]model[:tag]; the server checks again.
const OLLAMA_NAME =
  /^(?:(?:https?:\/\/)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]+)?\/)?(?:[A-Za-z0-9_][A-Za-z0-9_-]*\/)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/;

export function ollamaNameProblem(name) {
  if (!name) return "Enter a model name, e.g. llama3.2 or qwen2.5:0.5b.";
  if (name.includes("..") || !OLLAMA_NAME.test(name)) {
    return "Use letters, digits, '.', '_' and '-': model, model:tag or namespace/model:tag.";
  }
  return "";
}

function instanceSelect(instances) {
  return h(
    "select",
    { name: "instance_id" },
    instances.length
      ? instances.map((i) => h("option", { value: i.id }, `${i.id} · ${i.base_url}`))
      : h("option", { value: "default" }, "default"),
  );
}

/** `instances`: the instances that pull models. */
export function ollamaPanel(instances) {
  const name = h("input", {
    name: "model_name",
    required: true,
    placeholder: "llama3.2:3b",
    autocomplete: "off",
    spellcheck: "false",
  });
  const instance = instanceSelect(instances);
  const error = h("div", { class: "field-error wide", role: "alert" });
  const button = h("button", { class: "btn btn-primary", type: "submit" }, "Pull");
  name.addEventListener("input", () => {
    error.textContent = name.value ? ollamaNameProblem(name.value.trim()) : "";
  });
  const form = h(
    "form",
    { class: "form", id: "ollama-form", novalidate: true },
    h("label", {}, "Model name", name),
    h("label", {}, "Ollama instance", instance),
    error,
    h("div", { class: "row wide" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = name.value.trim();
    const problem = ollamaNameProblem(value);
    if (problem) {
      error.textContent = problem;
      return;
    }
    const body = { source: "ollama", model_name: value, instance_id: instance.value };
    if (await submitDownload(body, button, error)) form.reset();
  });
  return h(
    "section",
    { class: "panel get-panel" },
    h("h2", {}, "Ollama library"),
    h("p", { class: "muted small" }, "Pulled through the Ollama instance, layer by layer."),
    form,
  );
}
