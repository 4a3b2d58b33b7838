// Get models: recommended models, an Ollama name, any URL, or a Hugging Face repo's GGUF files
// with their quantization, size and whether they fit. Downloads run on the server; the
// Downloads page follows them.
import { get, post } from "../js/api.js";
import { h, render } from "../js/dom.js";
import { bytes } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";
import { recommendedSection } from "./models-extra.js";

// PROTOCOLS §1.2: [host/][namespace/]model[:tag]; the server checks again.
const OLLAMA_NAME =
  /^(?:(?:https?:\/\/)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[0-9]+)?\/)?(?:[A-Za-z0-9_][A-Za-z0-9_-]*\/)?[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/;
const SHA256 = /^[0-9a-fA-F]{64}$/;
const CTX_SIZES = [2048, 4096, 8192, 16384, 32768];
const FIT_LABEL = { fits: "fits", tight: "tight", too_large: "too large" };

export function ollamaNameProblem(name) {
  if (!name) return "Enter a model name, e.g. llama3.2 or qwen2.5:0.5b.";
  if (name.includes("..") || !OLLAMA_NAME.test(name)) {
    return "Use letters, digits, '.', '_' and '-': model, model:tag or namespace/model:tag.";
  }
  return "";
}

async function start(body, button, error) {
  error.textContent = "";
  button.disabled = true;
  try {
    const task = await post("/api/downloads", body);
    const name = task.model_name || task.filename || task.url;
    toast(`${task.state === "completed" ? "Already downloaded" : "Downloading"} ${name}`, {
      kind: "success",
      hint: "Follow it on the Downloads page.",
    });
    return task;
  } catch (err) {
    error.textContent = `${err.detail}${err.hint ? ` — ${err.hint}` : ""}`;
    return null;
  } finally {
    button.disabled = false;
  }
}

function ollamaPanel(instances) {
  const name = h("input", {
    name: "model_name",
    required: true,
    placeholder: "llama3.2:3b",
    autocomplete: "off",
    spellcheck: "false",
  });
  const instance = h(
    "select",
    { name: "instance_id" },
    instances.length
      ? instances.map((i) => h("option", { value: i.id }, `${i.id} · ${i.base_url}`))
      : h("option", { value: "default" }, "default"),
  );
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
    const task = await start(
      { source: "ollama", model_name: value, instance_id: instance.value },
      button,
      error,
    );
    if (task) form.reset();
  });
  return h(
    "section",
    { class: "panel get-panel" },
    h("h2", {}, "Ollama library"),
    h("p", { class: "muted small" }, "Pulled through the Ollama instance, layer by layer."),
    form,
  );
}

function urlPanel() {
  const url = h("input", {
    name: "url",
    type: "url",
    required: true,
    placeholder: "https://example.com/model-q4_k_m.gguf",
  });
  const filename = h("input", {
    name: "filename",
    placeholder: "from the URL",
    autocomplete: "off",
  });
  const sha256 = h("input", {
    name: "sha256",
    placeholder: "optional: verified when given",
    autocomplete: "off",
    spellcheck: "false",
  });
  const mode = h(
    "select",
    { name: "mode" },
    ["llm", "embed", "rerank"].map((m) => h("option", { value: m }, m)),
  );
  const force = h("input", { type: "checkbox", name: "force" });
  const error = h("div", { class: "field-error wide", role: "alert" });
  const button = h("button", { class: "btn btn-primary", type: "submit" }, "Download");
  url.addEventListener("input", () => {
    const last = url.value.split(/[?#]/)[0].split("/").pop();
    filename.placeholder = last ? decodeURIComponent(last) : "from the URL";
  });
  const form = h(
    "form",
    { class: "form", id: "url-form", novalidate: true },
    h("label", { class: "wide" }, "URL (http or https)", url),
    h("label", {}, "File name", filename),
    h("label", {}, "Mode", mode),
    h("label", { class: "wide" }, "sha256", sha256),
    h("label", { class: "switch wide" }, force, "Skip the free-disk check"),
    error,
    h("div", { class: "row wide" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { source: "url", url: url.value.trim(), mode: mode.value, force: force.checked };
    if (!/^https?:\/\/./i.test(body.url)) {
      error.textContent = "Give an http:// or https:// URL.";
      return;
    }
    if (filename.value.trim()) body.filename = filename.value.trim();
    if (sha256.value.trim()) {
      if (!SHA256.test(sha256.value.trim())) {
        error.textContent = "A sha256 is 64 hexadecimal characters.";
        return;
      }
      body.sha256 = sha256.value.trim();
    }
    const task = await start(body, button, error);
    if (task) form.reset();
  });
  return h(
    "section",
    { class: "panel get-panel" },
    h("h2", {}, "From a URL"),
    h("p", { class: "muted small" }, "Saved in the models directory; resumed if interrupted."),
    form,
  );
}

function fitBadge(verdict) {
  if (!verdict) return h("span", { class: "muted" }, "—");
  return h(
    "span",
    { class: "badge fit", dataset: { fit: verdict.verdict }, title: verdict.hint },
    FIT_LABEL[verdict.verdict],
  );
}

function hfPanel() {
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
  const state = { listing: null, quant: "" };
  const form = h(
    "form",
    { class: "form", id: "hf-form", novalidate: true },
    h("label", { class: "wide" }, "Repository", repo),
    h("label", {}, "Revision", revision),
    h("label", {}, "Context for the fit estimate", ctx),
    error,
    h("div", { class: "row wide" }, button),
  );

  function draw() {
    const { listing } = state;
    if (!listing) return;
    if (!listing.files.length) {
      render(results, h("p", { class: "muted" }, "This repository has no GGUF files."));
      return;
    }
    const quants = [...new Set(listing.files.map((f) => f.quantization).filter(Boolean))];
    const shown = listing.files.filter((f) => !state.quant || f.quantization === state.quant);
    const chip = (value, label) =>
      h(
        "button",
        {
          class: "btn btn-small",
          type: "button",
          "aria-pressed": String(state.quant === value),
          onclick: () => {
            state.quant = value;
            draw();
          },
        },
        label,
      );
    render(
      results,
      h(
        "div",
        { class: "row quant-chips", role: "group", "aria-label": "Quantization" },
        h("span", { class: "muted small" }, "Quantization"),
        chip("", "All"),
        quants.map((q) => chip(q, q)),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "hf-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, "File"),
              h("th", {}, "Quant"),
              h("th", { class: "num" }, "Size"),
              h("th", { class: "num" }, "Memory"),
              h("th", {}, "Fits in memory"),
              h("th", {}, "Disk"),
              h("th", {}, ""),
            ),
          ),
          h(
            "tbody",
            {},
            shown.map((f) => fileRow(f, listing)),
          ),
        ),
      ),
    );
  }

  function fileRow(f, listing) {
    const error = h("div", { class: "field-error" });
    const button = h(
      "button",
      { class: "btn btn-small btn-primary", type: "button", "data-download": f.filename },
      "Download",
    );
    button.addEventListener("click", async () => {
      // A split model is several files; llama.cpp opens the first and finds the rest.
      for (const part of f.parts) {
        const body = {
          source: "hf",
          repo: listing.repo,
          filename: part.filename,
          revision: listing.revision,
        };
        if (!(await start(body, button, error))) return;
      }
    });
    const parts =
      f.parts.length > 1 ? h("div", { class: "muted small" }, `${f.parts.length} parts`) : null;
    return h(
      "tr",
      { dataset: { file: f.filename } },
      h(
        "td",
        { class: "hf-file" },
        h("span", { class: "mono" }, f.filename),
        parts,
        f.is_projector ? h("div", { class: "muted small" }, "vision projector") : null,
        error,
      ),
      h("td", {}, f.quantization ? h("span", { class: "badge plain" }, f.quantization) : "—"),
      h("td", { class: "num" }, bytes(f.size)),
      h("td", { class: "num" }, f.memory ? bytes(f.memory.total) : "—"),
      h("td", { "data-testid": "fit" }, fitBadge(f.fit)),
      h("td", {}, fitBadge(f.disk)),
      h("td", {}, button),
    );
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const name = repo.value
      .trim()
      .replace(/^https?:\/\/[^/]+\//, "")
      .replace(/^hf:\/\//, "");
    if (!/^[^/\s]+\/[^/\s]+$/.test(name)) {
      error.textContent = "Give the repository as owner/name.";
      return;
    }
    button.disabled = true;
    render(results, h("p", { class: "muted" }, "Asking the Hub…"));
    try {
      const query = new URLSearchParams({
        repo: name,
        revision: revision.value.trim() || "main",
        ctx_size: ctx.value,
      });
      state.listing = await get(`/api/downloads/hf/files?${query}`);
      state.quant = "";
      draw();
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

export default {
  async mount(root) {
    const recommended = h("div", { class: "section", id: "recommended" });
    const forms = h("div", { class: "grid get-grid section" });
    const hub = h("div");
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          {},
          h("h1", {}, "Get models"),
          h(
            "p",
            { class: "page-sub" },
            "From the Ollama library, any URL, or Hugging Face. Downloads keep going on the server.",
          ),
        ),
        h(
          "div",
          { class: "toolbar" },
          h("a", { class: "btn", href: "#/downloads" }, "Downloads →"),
        ),
      ),
      recommended,
      forms,
      hub,
    );

    let instances = [];
    try {
      instances = (await get("/api/providers")).instances.filter((i) => i.provider === "ollama");
    } catch (err) {
      toastError(err);
    }
    render(forms, ollamaPanel(instances), urlPanel());
    render(hub, hfPanel());
    await recommendedSection(recommended);
    // Open on a wide screen; on a phone it would push the forms far down.
    const details = recommended.querySelector("details");
    if (details) details.open = window.matchMedia("(min-width: 721px)").matches;
  },
};
