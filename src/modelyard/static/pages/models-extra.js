// The Models page's details drawer and recommended list (kept apart to keep models.js short).
import { get, post } from "../js/api.js";
import { h, render } from "../js/dom.js";
import { ago, bytes } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";

const PROVIDERS = {
  ollama: "Ollama",
  llamacpp: "llama.cpp",
  lmstudio: "LM Studio",
  openai_compat: "OpenAI-compatible",
  openai: "OpenAI",
  anthropic: "Anthropic",
};

const LOCAL_INSTANCE = "local"; // the instance id of the GGUF files of the models directory
const STARTABLE = new Set(["ollama", "lmstudio"]);
const DELETABLE = new Set(["ollama"]);
const ALLOW = { ok: true, why: null };
const refuse = (why) => ({ ok: false, why });

/** Whether a llama.cpp row is a GGUF file or server modelyard runs itself: a file of the models
 * directory, or the model of a managed instance (`managed`: their "provider/id" keys). */
function ownGguf(m, managed) {
  return m.instance_id === LOCAL_INSTANCE || managed.has(`${m.provider}/${m.instance_id}`);
}

/**
 * What modelyard can do with model `m` — the one rule set of the table, the cards and the drawer,
 * matching what the API accepts. Each of start, stop, delete, recreate is `{ok, why}` (`why`
 * says why not); `recreate` is null where there is nothing to recreate; `primary` is the
 * start/stop button to show.
 */
export function modelRules(m, managed) {
  const label = PROVIDERS[m.provider] || m.provider;
  const running = ["loaded", "starting"].includes(m.status);
  const gguf = m.provider === "llamacpp";
  const file = gguf && m.instance_id === LOCAL_INSTANCE;
  let never = null; // why start and stop can never work
  if (gguf && !ownGguf(m, managed)) {
    never =
      `llama.cpp server ${m.instance_id} is not managed by modelyard: ` +
      "start or stop it yourself";
  } else if (!gguf && !STARTABLE.has(m.provider)) {
    never = `${label} servers load their models themselves: modelyard cannot start or stop them`;
  }
  let start = ALLOW;
  if (never) start = refuse(never);
  else if (m.status === "downloading") start = refuse("Wait for the download to finish");
  else if (running) start = refuse("Already running");
  else if (!["available", "failed"].includes(m.status)) start = refuse(`The model is ${m.status}`);
  const stop = never ? refuse(never) : running ? ALLOW : refuse("The model is not running");
  let del = ALLOW;
  if (gguf && !file) del = refuse("modelyard deletes only GGUF files of its models directory");
  else if (!gguf && !DELETABLE.has(m.provider)) del = refuse(`${label} models cannot be deleted`);
  else if (m.status === "downloading") del = refuse("Wait for the download to finish");
  else if (file && running) del = refuse("Stop the model first");
  return {
    start,
    stop,
    delete: del,
    recreate: file || DELETABLE.has(m.provider) ? del : null,
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
  const btn = (label, action, cls = "") =>
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
  return [
    rules.primary === "stop"
      ? btn("Stop", "stop")
      : btn(
          busy && m.status === "starting" ? "Starting…" : "Start",
          "start",
          emphasis ? " btn-primary" : "",
        ),
    btn("Delete", "delete", " btn-danger"),
    recreate && rules.recreate ? btn("Recreate", "recreate") : null,
  ];
}

function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

function section(title, ...children) {
  return h("section", { class: "drawer-section" }, h("h3", {}, title), ...children);
}

function estimateView(estimate, fit) {
  const parts = [
    ["Weights", estimate.weights, "w"],
    ["KV cache", estimate.kv_cache, "kv"],
    ["Compute", estimate.compute, "c"],
  ];
  return [
    h(
      "div",
      { class: "mem-bar", role: "img", "aria-label": `Needs about ${bytes(estimate.total)}` },
      parts.map(([label, value, cls]) =>
        h("span", {
          class: `mem-${cls}`,
          title: `${label}: ${bytes(value)}`,
          style: { width: `${Math.max(2, (100 * value) / estimate.total)}%` },
        }),
      ),
    ),
    kv([
      ...parts.map(([label, value]) => [label, bytes(value)]),
      ["Total", h("strong", {}, bytes(estimate.total))],
      ["Context", `${estimate.ctx_size.toLocaleString()} tokens`],
      [
        "Based on",
        { gguf: "GGUF metadata", parameters: "parameter count", file_size: "file size" }[
          estimate.basis
        ],
      ],
    ]),
    fit
      ? h(
          "div",
          {
            class: "reason",
            dataset: { state: fit.fits ? "RUNNING" : "ERROR" },
            "data-testid": "fit",
          },
          h("code", {}, fit.verdict),
          ` — ${fit.hint} (${bytes(fit.available)} available in ${fit.target})`,
        )
      : null,
  ];
}

function ggufView(g) {
  return kv([
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
  ]);
}

/** Open the details drawer of model `m`; `act(m, action)` runs row actions, `managed` holds
 * the keys of managed instances (see `modelRules`). */
export async function openDrawer(m, { act, managed }) {
  document.querySelector(".drawer")?.remove();
  const body = h("div", { class: "drawer-body" }, h("p", { class: "muted" }, "Loading…"));
  const close = () => {
    drawer.remove();
    document.removeEventListener("keydown", onKey);
  };
  const onKey = (ev) => {
    if (ev.key === "Escape") close();
  };
  const drawer = h(
    "aside",
    { class: "drawer", id: "model-drawer", role: "dialog", "aria-label": `Details of ${m.name}` },
    h(
      "div",
      { class: "drawer-head" },
      h("h2", {}, m.name),
      h(
        "button",
        { class: "btn btn-small", type: "button", "aria-label": "Close", onclick: close },
        "×",
      ),
    ),
    body,
  );
  document.body.append(drawer);
  document.addEventListener("keydown", onKey);
  const params = new URLSearchParams({
    provider: m.provider,
    name: m.name,
    instance_id: m.instance_id,
  });
  try {
    const d = await get(`/api/models/details?${params}`);
    const loaded = d.loaded || {};
    const memory = loaded.memory ?? loaded.size;
    const onAction = (action) => {
      close();
      act(m, action);
    };
    render(
      body,
      h(
        "div",
        { class: "row drawer-actions" },
        h("span", { class: "badge", dataset: { state: d.status } }, d.status),
        h("span", { class: "spacer" }),
        actionButtons({ ...m, ...d }, managed, { recreate: false, emphasis: true, onAction }),
      ),
      section(
        "Overview",
        kv([
          ["Provider", `${PROVIDERS[d.provider] || d.provider} · ${d.instance_id}`],
          ["Size", bytes(d.size)],
          ["Format", d.format],
          ["Family", d.family],
          ["Parameters", d.parameter_size],
          ["Quantization", d.quantization],
          ["Mode", d.mode],
          ["Context", d.context_length?.toLocaleString()],
          ["Source", d.source],
          [
            "Modified",
            d.modified_at
              ? `${ago(d.modified_at)} (${new Date(d.modified_at).toLocaleString()})`
              : null,
          ],
          ["Path", d.path ? h("span", { class: "mono" }, d.path) : null],
          ["Digest", d.digest ? h("span", { class: "mono" }, d.digest.slice(0, 16)) : null],
          ["Problem", d.meta?.error],
        ]),
      ),
      d.status === "loaded"
        ? section(
            "Running",
            kv([
              ["Server", loaded.base_url ? h("span", { class: "mono" }, loaded.base_url) : null],
              ["PID", loaded.pid],
              ["Memory", memory ? bytes(memory) : null],
              ["VRAM", loaded.size_vram ? bytes(loaded.size_vram) : null],
              ["Context", loaded.ctx_size ?? loaded.context_length],
              ["Unloads", loaded.expires_at ? new Date(loaded.expires_at).toLocaleString() : null],
            ]),
          )
        : null,
      d.gguf ? section("GGUF metadata", ggufView(d.gguf)) : null,
      d.estimate ? section("Memory estimate", estimateView(d.estimate, d.fit)) : null,
      d.source_request
        ? section(
            "Recorded source",
            h("pre", { class: "log" }, JSON.stringify(d.source_request, null, 2)),
          )
        : null,
    );
  } catch (err) {
    render(
      body,
      h("p", { class: "field-error" }, err.detail || err.message),
      err.hint ? h("p", { class: "muted" }, err.hint) : null,
    );
  }
}

function recommendedCard(item) {
  const install = async (btn) => {
    btn.disabled = true;
    try {
      const task = await post("/api/models/install", { id: item.id });
      toast(`Downloading ${item.name}`, {
        kind: "success",
        hint: task?.id ? "Follow it on the Downloads page." : "",
      });
    } catch (err) {
      toastError(err);
      btn.disabled = false;
    }
  };
  const button = h("button", {
    class: "btn btn-small btn-primary",
    type: "button",
    "data-install": item.id,
  });
  button.textContent = "Install";
  button.addEventListener("click", () => install(button));
  return h(
    "article",
    { class: "panel card rec-card", dataset: { id: item.id } },
    h(
      "div",
      { class: "card-head" },
      h(
        "div",
        { style: { flex: "1", minWidth: "0" } },
        h("div", { class: "card-title" }, item.name.split("/").pop()),
        h(
          "div",
          { class: "card-sub" },
          `${PROVIDERS[item.provider]} · ~${bytes(item.size)} · ${item.mode}`,
        ),
      ),
      item.installed
        ? h("span", { class: "badge", dataset: { state: "loaded" } }, "installed")
        : button,
    ),
    h("p", { class: "rec-desc" }, item.description),
    h(
      "div",
      { class: "row" },
      item.tags.map((t) => h("span", { class: "badge plain" }, t)),
    ),
  );
}

/** Fill `box` with the recommended models, each installed or with an Install button. */
export async function recommendedSection(box) {
  try {
    const { models } = await get("/api/models/available");
    const installed = models.filter((m) => m.installed).length;
    render(
      box,
      h(
        "details",
        { class: "panel rec-panel" },
        h(
          "summary",
          {},
          h("strong", {}, "Recommended models"),
          h("span", { class: "muted" }, ` · ${installed} of ${models.length} installed`),
        ),
        h("div", { class: "grid rec-grid" }, models.map(recommendedCard)),
      ),
    );
  } catch (err) {
    toastError(err);
  }
}
