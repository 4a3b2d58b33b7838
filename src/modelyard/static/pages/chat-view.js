// Chat page pieces: one message's view (Markdown, status, timings, actions), the model
// picker's labels and the reader of an answer's text/event-stream.
import { h, render } from "../js/dom.js";
import { markdownInto } from "../js/markdown.js";
import { toast } from "../js/toast.js";

export const PROVIDER_LABELS = {
  ollama: "Ollama",
  llamacpp: "llama.cpp",
  lmstudio: "LM Studio",
  openai_compat: "OpenAI-compatible",
  openai: "OpenAI",
  anthropic: "Anthropic",
};

const ICONS = {
  plus: ["M12 5v14", "M5 12h14"],
  pencil: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6", "M10 11v6", "M14 11v6"],
  menu: ["M3 6h18", "M3 12h18", "M3 18h18"],
  sliders: [
    "M4 21v-7",
    "M4 10V3",
    "M12 21v-9",
    "M12 8V3",
    "M20 21v-5",
    "M20 12V3",
    "M1 14h6",
    "M9 8h6",
    "M17 16h6",
  ],
  send: ["M12 19V5", "M5 12l7-7 7 7"],
  stop: ["M7 7h10v10H7z"],
  copy: ["M9 9h11v11H9z", "M5 15H4V4h11v1"],
  redo: ["M21 12a9 9 0 1 1-2.6-6.4L21 8", "M21 3v5h-5"],
  chat: ["M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"],
};

/** A line icon drawn with SVG (no icon font or emoji needed). */
export function icon(name, size = 16) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [k, v] of Object.entries({
    width: size,
    height: size,
    viewBox: "0 0 24 24",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": 2,
    "stroke-linecap": "round",
    "stroke-linejoin": "round",
    "aria-hidden": "true",
    class: "icon",
  })) {
    svg.setAttribute(k, String(v));
  }
  for (const d of ICONS[name]) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/** "provider/instance/name" → a stable key for a model of the picker. */
export function modelKey(m) {
  return JSON.stringify([m.provider, m.instance_id || "", m.name]);
}

export function groupLabel(provider, instanceId, instancesOfProvider) {
  const label = PROVIDER_LABELS[provider] || provider;
  if (provider === "llamacpp" && instanceId === "local") return `${label} · models folder`;
  return instancesOfProvider > 1 && instanceId ? `${label} · ${instanceId}` : label;
}

/** "first token 120 ms · 45.2 tok/s · 24 tokens" */
export function metaText(msg) {
  const parts = [];
  if (msg.ttft_ms !== null && msg.ttft_ms !== undefined)
    parts.push(`first token ${Math.round(msg.ttft_ms)} ms`);
  if (msg.tokens_per_s) parts.push(`${msg.tokens_per_s.toFixed(1)} tok/s`);
  const tokens = msg.usage?.completion_tokens;
  if (tokens !== null && tokens !== undefined)
    parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  return parts.join(" · ");
}

function copyMessage(content) {
  const done = () => toast("Copied to the clipboard", { kind: "success", timeout: 1500 });
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(content).then(done, () => {});
}

/**
 * The view of one message. `update()` redraws it from `msg` (cheap enough to call on every
 * animation frame while tokens arrive).
 */
export function messageView(msg, { onRegenerate }) {
  const root = h("article", { class: "msg", dataset: { role: msg.role } });
  const body = h("div", { class: "msg-body" });
  const status = h("div", { class: "msg-status hidden", "aria-live": "polite" });
  const error = h("div", { class: "msg-error hidden", role: "alert" });
  const foot = h("div", { class: "msg-foot" });
  const head = h("div", { class: "msg-head" });
  root.append(...(msg.role === "assistant" ? [head, body, status, error, foot] : [body]));
  let lastContent = null;

  function update({ isLast = false, busy = false } = {}) {
    root.dataset.state = msg.state || "complete";
    if (msg.id) root.dataset.id = msg.id;
    if (msg.role === "user") {
      if (lastContent !== msg.content) body.textContent = msg.content;
      lastContent = msg.content;
      return;
    }
    render(
      head,
      h("span", { class: "msg-model" }, msg.model || "model"),
      msg.provider
        ? h("span", { class: "msg-provider" }, PROVIDER_LABELS[msg.provider] || msg.provider)
        : null,
    );
    if (lastContent !== msg.content) {
      markdownInto(body, msg.content || "");
      lastContent = msg.content;
    }
    const streaming = msg.state === "streaming";
    root.classList.toggle("msg-typing", streaming && !!msg.content);
    status.textContent = streaming && !msg.content ? msg.status || "Thinking…" : "";
    status.classList.toggle("hidden", !status.textContent);
    if (msg.state === "error") {
      render(
        error,
        h("strong", {}, msg.code ? `${msg.code}: ` : "Error: "),
        msg.error || "the answer failed",
        msg.hint ? h("div", { class: "msg-hint" }, msg.hint) : null,
      );
    } else {
      render(error);
    }
    error.classList.toggle("hidden", msg.state !== "error");
    const meta = metaText(msg);
    render(
      foot,
      meta ? h("span", { class: "msg-meta", "data-testid": "meta" }, meta) : null,
      msg.state === "stopped" ? h("span", { class: "badge plain msg-stopped" }, "stopped") : null,
      msg.trimmed
        ? h(
            "span",
            { class: "msg-meta", title: "Older messages were left out to fit the model's context" },
            `${msg.trimmed} older left out`,
          )
        : null,
      h("span", { class: "spacer" }),
      !streaming && msg.content
        ? h(
            "button",
            {
              class: "btn btn-small btn-ghost",
              type: "button",
              onclick: () => copyMessage(msg.content),
              title: "Copy the answer",
            },
            icon("copy", 14),
            "Copy",
          )
        : null,
      isLast && !streaming && !busy
        ? h(
            "button",
            {
              class: "btn btn-small btn-ghost",
              type: "button",
              "data-action": "regenerate",
              onclick: onRegenerate,
              title: "Answer again",
            },
            icon("redo", 14),
            "Regenerate",
          )
        : null,
    );
    foot.classList.toggle("hidden", streaming && !meta);
  }

  return { root, update, msg };
}

/** Read a text/event-stream response and call `onEvent` with each JSON event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
      }
    }
  }
}
