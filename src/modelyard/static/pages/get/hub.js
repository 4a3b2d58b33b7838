// Hugging Face: list a repository's GGUF files with the fit estimate of this machine.
import { h, render } from "../../js/dom.js";
import { drawHubFiles } from "./hub-files.js";
import { listHubFiles } from "./requests.js";

const CTX_SIZES = [2048, 4096, 8192, 16384, 32768];

/** "owner/name" from what was typed (a Hub URL or hf:// too), or null. */
function repoName(typed) {
  const name = typed
    .trim()
    .replace(/^https?:\/\/[^/]+\//, "")
    .replace(/^hf:\/\//, "");
  return /^[^/\s]+\/[^/\s]+$/.test(name) ? name : null;
}

export function hubPanel() {
  const repo = h("input", {
    name: "repo",
    required: true,
    placeholder: "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
    autocomplete: "off",
    spellcheck: "false",
  });
  const revision = h("input", { name: "revision", value: "main", autocomplete: "off" });
  const ctx = h(
    "select",
    { name: "ctx_size" },
    CTX_SIZES.map((n) => h("option", { value: n, selected: n === 4096 }, `${n} tokens`)),
  );
  const error = h("div", { class: "field-error wide", role: "alert" });
  const button = h("button", { class: "btn btn-primary", type: "submit" }, "List files");
  const results = h("div", { id: "hf-results" });
  const form = h(
    "form",
    { class: "form", id: "hf-form", novalidate: true },
    h("label", { class: "wide" }, "Repository", repo),
    h("label", {}, "Revision", revision),
    h("label", {}, "Context for the fit estimate", ctx),
    error,
    h("div", { class: "row wide" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const name = repoName(repo.value);
    if (!name) {
      error.textContent = "Give the repository as owner/name.";
      return;
    }
    button.disabled = true;
    render(results, h("p", { class: "muted" }, "Asking the Hub…"));
    try {
      drawHubFiles(results, await listHubFiles(name, revision.value.trim() || "main", ctx.value));
    } catch (err) {
      render(results);
      error.textContent = `${err.detail}${err.hint ? ` — ${err.hint}` : ""}`;
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { class: "panel section", id: "hf-panel" },
    h("h2", {}, "Hugging Face"),
    h(
      "p",
      { class: "muted small" },
      "Pick a quantization: sizes come from the Hub, the memory estimate from this machine.",
    ),
    form,
    results,
  );
}
