// One message's view in the thread: Markdown, status, error, timings and actions.
import { h, render } from "../../js/dom.js";
import { icon } from "../../js/icons.js";
import { kindLabel } from "../../js/kinds.js";
import { markdownInto } from "../../js/markdown.js";
import { toast } from "../../js/toast.js";

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
      msg.provider ? h("span", { class: "msg-provider" }, kindLabel(msg.provider)) : null,
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
