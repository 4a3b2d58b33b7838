// A Hugging Face repository's GGUF files: quantization chips, and a row per file with its
// size, memory need, whether it fits and a Download button.
import { h, render } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { submitDownload } from "./download.js";

const FIT_LABEL = { fits: "fits", tight: "tight", too_large: "too large" };

function fitBadge(verdict) {
  if (!verdict) return h("span", { class: "muted" }, "—");
  return h(
    "span",
    { class: "badge fit", dataset: { fit: verdict.verdict }, title: verdict.hint },
    FIT_LABEL[verdict.verdict],
  );
}

function downloadButton(f, listing, error) {
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
      if (!(await submitDownload(body, button, error))) return;
    }
  });
  return button;
}

function fileRow(f, listing) {
  const error = h("div", { class: "field-error" });
  return h(
    "tr",
    { dataset: { file: f.filename } },
    h(
      "td",
      { class: "hf-file" },
      h("span", { class: "mono" }, f.filename),
      f.parts.length > 1 ? h("div", { class: "muted small" }, `${f.parts.length} parts`) : null,
      f.is_projector ? h("div", { class: "muted small" }, "vision projector") : null,
      error,
    ),
    h("td", {}, f.quantization ? h("span", { class: "badge plain" }, f.quantization) : "—"),
    h("td", { class: "num" }, bytes(f.size)),
    h("td", { class: "num" }, f.memory ? bytes(f.memory.total) : "—"),
    h("td", { "data-testid": "fit" }, fitBadge(f.fit)),
    h("td", {}, fitBadge(f.disk)),
    h("td", {}, downloadButton(f, listing, error)),
  );
}

function quantChips(quants, chosen, choose) {
  const chip = (value, label) =>
    h(
      "button",
      {
        class: "btn btn-small",
        type: "button",
        "aria-pressed": String(chosen === value),
        onclick: () => choose(value),
      },
      label,
    );
  return h(
    "div",
    { class: "row quant-chips", role: "group", "aria-label": "Quantization" },
    h("span", { class: "muted small" }, "Quantization"),
    chip("", "All"),
    quants.map((q) => chip(q, q)),
  );
}

const HEADINGS = ["File", "Quant", "Size", "Memory", "Fits in memory", "Disk", ""];
const NUMERIC = new Set(["Size", "Memory"]);

/** Draw `listing` into `box`, showing the files of quantization `quant` ("" for all). */
export function drawHubFiles(box, listing, quant = "") {
  if (!listing.files.length) {
    render(box, h("p", { class: "muted" }, "This repository has no GGUF files."));
    return;
  }
  const quants = [...new Set(listing.files.map((f) => f.quantization).filter(Boolean))];
  const shown = listing.files.filter((f) => !quant || f.quantization === quant);
  render(
    box,
    quantChips(quants, quant, (q) => drawHubFiles(box, listing, q)),
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
            HEADINGS.map((t) => h("th", { class: NUMERIC.has(t) ? "num" : null }, t)),
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
