// The Chat page's settings form: a system prompt and the sampling options, checked here so that
// a refused value is said under the fields rather than ending in a silent Save.
import { h } from "../../js/dom.js";
import { toast, toastError } from "../../js/toast.js";

// The API's limits; every value it takes must be valid for the browser too (step 1, not 256).
export const OPTIONS = [
  {
    key: "temperature",
    label: "Temperature",
    min: 0,
    max: 2,
    step: 0.01,
    help: "0–2; lower is more focused.",
  },
  { key: "top_p", label: "Top P", min: 0.01, max: 1, step: 0.01, help: "0–1; nucleus sampling." },
  {
    key: "max_tokens",
    label: "Max tokens",
    min: 1,
    max: 1048576,
    step: 1,
    help: "1 or more; the longest answer.",
  },
  {
    key: "ctx_size",
    label: "Context size",
    min: 64,
    max: 1048576,
    step: 1,
    help: "64 or more, e.g. 4096; tokens of history the model sees.",
  },
];

// A form for ``source`` ({system, options}); ``save(system, options)`` stores them (and throws
// an ApiError when the server refuses them), ``close()`` hides the form.
export function settingsForm(source, save, close) {
  const system = h("textarea", {
    id: "chat-system",
    rows: 3,
    placeholder: "You are a helpful assistant.",
  });
  system.value = source.system || "";
  const fields = OPTIONS.map((o) => {
    const value = source.options?.[o.key];
    return h(
      "label",
      {},
      o.label,
      h("input", {
        type: "number",
        name: o.key,
        min: o.min,
        max: o.max,
        step: o.step,
        placeholder: "default",
        value: value ?? "",
      }),
      h("span", { class: "small muted" }, o.help),
    );
  });
  // No browser checks (novalidate): a refused value is said here, not a silent Save.
  const problem = h("div", { class: "field-error wide", id: "chat-settings-error", role: "alert" });
  const form = h(
    "form",
    { class: "form chat-settings-form", novalidate: true },
    h("label", { class: "wide" }, "System prompt", system),
    ...fields,
    problem,
    h(
      "div",
      { class: "row wide" },
      h("button", { class: "btn btn-primary", type: "submit" }, "Save"),
      h("button", { class: "btn", type: "button", onclick: close }, "Close"),
    ),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problem.textContent = "";
    const options = {};
    for (const o of OPTIONS) {
      const field = form.elements[o.key];
      field.removeAttribute("aria-invalid");
      if (!field.validity.valid) {
        field.setAttribute("aria-invalid", "true");
        problem.textContent = `${o.label}: ${field.validationMessage || "not a valid number."} ${o.help}`;
        field.focus();
        return;
      }
      const raw = field.value.trim();
      if (raw !== "") options[o.key] = o.step >= 1 ? parseInt(raw, 10) : parseFloat(raw);
    }
    try {
      await save(system.value, options);
      toast("Settings saved", { kind: "success", timeout: 2000 });
    } catch (err) {
      problem.textContent = err.detail || err.message || "The settings could not be saved.";
      toastError(err);
    }
  });
  return form;
}
