// The sections of a model's details: overview, running server, GGUF metadata, memory estimate.
import { h } from "../../js/dom.js";
import { ago, bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";

const BASIS = { gguf: "GGUF metadata", parameters: "parameter count", file_size: "file size" };

/** A definition list of the pairs whose value is known. */
function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

export function section(title, ...children) {
  return h("section", { class: "drawer-section" }, h("h3", {}, title), ...children);
}

const mono = (value) => (value ? h("span", { class: "mono" }, value) : null);

export function overview(d) {
  const modified = d.modified_at
    ? `${ago(d.modified_at)} (${new Date(d.modified_at).toLocaleString()})`
    : null;
  return section(
    "Overview",
    kv([
      ["Provider", `${kindLabel(d.provider)} · ${d.instance_id}`],
      ["Size", bytes(d.size)],
      ["Format", d.format],
      ["Family", d.family],
      ["Parameters", d.parameter_size],
      ["Quantization", d.quantization],
      ["Mode", d.mode],
      ["Context", d.context_length?.toLocaleString()],
      ["Source", d.source],
      ["Modified", modified],
      ["Path", mono(d.path)],
      ["Digest", mono(d.digest?.slice(0, 16))],
      ["Problem", d.meta?.error],
    ]),
  );
}

export function running(d) {
  const loaded = d.loaded || {};
  const memory = loaded.memory ?? loaded.size;
  return section(
    "Running",
    kv([
      ["Server", mono(loaded.base_url)],
      ["PID", loaded.pid],
      ["Memory", memory ? bytes(memory) : null],
      ["VRAM", loaded.size_vram ? bytes(loaded.size_vram) : null],
      ["Context", loaded.ctx_size ?? loaded.context_length],
      ["Unloads", loaded.expires_at ? new Date(loaded.expires_at).toLocaleString() : null],
    ]),
  );
}

export function ggufMetadata(g) {
  return section(
    "GGUF metadata",
    kv([
      ["Architecture", g.architecture],
      ["Name", g.name],
      ["Parameters", `${g.parameter_size} (${g.parameter_count.toLocaleString()})`],
      ["Quantization", g.quantization],
      ["Context length", g.context_length?.toLocaleString()],
      ["Embedding length", g.embedding_length],
      ["Layers", g.block_count],
      [
        "Heads / KV heads",
        g.head_count ? `${g.head_count} / ${g.head_count_kv ?? g.head_count}` : null,
      ],
      ["Chat template", g.has_chat_template ? "yes" : "no"],
      ["Pooling", g.pooling_type],
      ["Mode", g.mode],
      ["Tensors", g.tensor_count],
      ["Split parts", g.split_count > 1 ? g.split_count : null],
      ["GGUF version", g.gguf_version],
    ]),
  );
}

function memoryBar(estimate, parts) {
  return h(
    "div",
    { class: "mem-bar", role: "img", "aria-label": `Needs about ${bytes(estimate.total)}` },
    parts.map(([label, value, cls]) =>
      h("span", {
        class: `mem-${cls}`,
        title: `${label}: ${bytes(value)}`,
        style: { width: `${Math.max(2, (100 * value) / estimate.total)}%` },
      }),
    ),
  );
}

function fitVerdict(fit) {
  return h(
    "div",
    { class: "reason", dataset: { state: fit.fits ? "RUNNING" : "ERROR" }, "data-testid": "fit" },
    h("code", {}, fit.verdict),
    ` — ${fit.hint} (${bytes(fit.available)} available in ${fit.target})`,
  );
}

export function memoryEstimate(estimate, fit) {
  const parts = [
    ["Weights", estimate.weights, "w"],
    ["KV cache", estimate.kv_cache, "kv"],
    ["Compute", estimate.compute, "c"],
  ];
  return section(
    "Memory estimate",
    memoryBar(estimate, parts),
    kv([
      ...parts.map(([label, value]) => [label, bytes(value)]),
      ["Total", h("strong", {}, bytes(estimate.total))],
      ["Context", `${estimate.ctx_size.toLocaleString()} tokens`],
      ["Based on", BASIS[estimate.basis]],
    ]),
    fit ? fitVerdict(fit) : null,
  );
}

export function recordedSource(request) {
  return section("Recorded source", h("pre", { class: "log" }, JSON.stringify(request, null, 2)));
}
