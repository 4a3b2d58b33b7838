// The thread of the open chat: its messages, or an invitation to start; scrolling that
// follows a streaming answer only while the reader is at the bottom.
import { h, render } from "../../js/dom.js";
import { icon } from "../../js/icons.js";
import { kindLabel } from "../../js/kinds.js";
import { messageView } from "./message.js";
import { chosenModel } from "./picker.js";

const NEAR_BOTTOM_PX = 80;

function emptyThread(chat) {
  const chosen = chosenModel(chat);
  return h(
    "div",
    { class: "chat-empty" },
    h("div", { class: "chat-empty-mark" }, icon("chat", 36)),
    h("h2", {}, chosen ? `Chat with ${chosen.name}` : "Pick a model to chat with"),
    h(
      "p",
      { class: "muted" },
      chosen
        ? `${kindLabel(chosen.provider)}. Answers stream in as they are written.`
        : "Models that can chat appear in the list above.",
    ),
  );
}

export function drawMessages(chat) {
  const msgs = chat.s.current?.messages || [];
  chat.s.views = msgs.map((m) => messageView(m, { onRegenerate: chat.regenerate }));
  if (!msgs.length) {
    render(chat.els.messages, emptyThread(chat));
    return;
  }
  render(
    chat.els.messages,
    h(
      "div",
      { class: "chat-thread" },
      chat.s.views.map((v) => v.root),
    ),
  );
  refreshViews(chat);
}

/** Redraw each message's state; only the last answer offers Regenerate, and not while busy. */
export function refreshViews(chat) {
  const { views } = chat.s;
  const lastAnswer = views.findLastIndex((v) => v.msg.role === "assistant");
  const busy = Boolean(chat.s.generating) || chat.s.remote;
  views.forEach((v, i) => {
    v.update({ isLast: i === lastAnswer && i === views.length - 1, busy });
  });
}

export function nearBottom(chat) {
  const m = chat.els.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < NEAR_BOTTOM_PX;
}

export function scrollToEnd(chat, force = false) {
  if (force || chat.s.stick) chat.els.messages.scrollTop = chat.els.messages.scrollHeight;
}
