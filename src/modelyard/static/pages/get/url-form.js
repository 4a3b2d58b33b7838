// Download a file from any http(s) URL into the models directory.
import { h } from "../../js/dom.js";
import { submitDownload } from "./download.js";

const SHA256 = /^[0-9a-fA-F]{64}$/;

function fields() {
  return {
    url: h("input", {
      name: "url",
      type: "url",
      required: true,
      placeholder: "https://example.com/model-q4_k_m.gguf",
    }),
    filename: h("input", { name: "filename", placeholder: "from the URL", autocomplete: "off" }),
    sha256: h("input", {
      name: "sha256",
      placeholder: "optional: verified when given",
      autocomplete: "off",
      spellcheck: "false",
    }),
    mode: h(
      "select",
      { name: "mode" },
      ["llm", "embed", "rerank"].map((m) => h("option", { value: m }, m)),
    ),
    force: h("input", { type: "checkbox", name: "force" }),
  };
}

/** The request body of the form, or a string saying what is wrong. */
function requestBody(f) {
  const body = {
    source: "url",
    url: f.url.value.trim(),
    mode: f.mode.value,
    force: f.force.checked,
  };
  if (!/^https?:\/\/./i.test(body.url)) return "Give an http:// or https:// URL.";
  if (f.filename.value.trim()) body.filename = f.filename.value.trim();
  const sha256 = f.sha256.value.trim();
  if (sha256 && !SHA256.test(sha256)) return "A sha256 is 64 hexadecimal characters.";
  if (sha256) body.sha256 = sha256;
  return body;
}

export function urlPanel() {
  const f = fields();
  const error = h("div", { class: "field-error wide", role: "alert" });
  const button = h("button", { class: "btn btn-primary", type: "submit" }, "Download");
  f.url.addEventListener("input", () => {
    const last = f.url.value.split(/[?#]/)[0].split("/").pop();
    f.filename.placeholder = last ? decodeURIComponent(last) : "from the URL";
  });
  const form = h(
    "form",
    { class: "form", id: "url-form", novalidate: true },
    h("label", { class: "wide" }, "URL (http or https)", f.url),
    h("label", {}, "File name", f.filename),
    h("label", {}, "Mode", f.mode),
    h("label", { class: "wide" }, "sha256", f.sha256),
    h("label", { class: "switch wide" }, f.force, "Skip the free-disk check"),
    error,
    h("div", { class: "row wide" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = requestBody(f);
    if (typeof body === "string") {
      error.textContent = body;
      return;
    }
    if (await submitDownload(body, button, error)) form.reset();
  });
  return h(
    "section",
    { class: "panel get-panel" },
    h("h2", {}, "From a URL"),
    h("p", { class: "muted small" }, "Saved in the models directory; resumed if interrupted."),
    form,
  );
}
