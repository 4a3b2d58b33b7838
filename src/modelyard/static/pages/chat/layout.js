// The Chat page's frame: conversations on the left; the title, model picker, settings,
// thread and composer on the right. Its elements are returned by name.
import { h } from "../../js/dom.js";
import { icon } from "../../js/icons.js";

function sidebar(els) {
  els.list = h("ul", { class: "conv-list", id: "conv-list", "aria-label": "Conversations" });
  els.search = h("input", {
    type: "search",
    class: "conv-search",
    placeholder: "Search chats",
    "aria-label": "Search chats",
  });
  els.newChat = h(
    "button",
    { class: "btn btn-primary", id: "chat-new", type: "button" },
    icon("plus"),
    "New chat",
  );
  return h(
    "aside",
    { class: "chat-side" },
    h("div", { class: "chat-side-head" }, els.newChat),
    els.search,
    els.list,
  );
}

function header(els) {
  els.picker = h("select", { id: "chat-model", "aria-label": "Model" });
  els.title = h("h1", { class: "chat-title", id: "chat-title" }, "New chat");
  els.menu = h(
    "button",
    { class: "btn btn-ghost chat-menu", type: "button", "aria-label": "Show conversations" },
    icon("menu", 18),
  );
  els.settingsToggle = h(
    "button",
    {
      class: "btn btn-ghost",
      type: "button",
      id: "chat-settings-toggle",
      "aria-expanded": "false",
      "aria-label": "Settings",
    },
    icon("sliders"),
    h("span", { class: "chat-settings-label" }, "Settings"),
  );
  return h(
    "header",
    { class: "chat-head" },
    els.menu,
    h("div", { class: "chat-head-main" }, els.title, els.picker),
    els.settingsToggle,
  );
}

function composer(els) {
  els.input = h("textarea", {
    id: "chat-input",
    rows: 1,
    placeholder: "Send a message…",
    "aria-label": "Message",
  });
  els.send = h(
    "button",
    { class: "btn btn-primary chat-send", id: "chat-send", type: "submit", title: "Send (Enter)" },
    icon("send"),
    "Send",
  );
  els.stop = h(
    "button",
    { class: "btn chat-stop hidden", id: "chat-stop", type: "button", title: "Stop (Esc)" },
    icon("stop"),
    "Stop",
  );
  els.composer = h(
    "form",
    { class: "chat-composer", id: "chat-composer" },
    h("div", { class: "chat-composer-box" }, els.input, els.send, els.stop),
    h(
      "div",
      { class: "chat-hint" },
      "Enter to send · Shift+Enter for a new line · Esc stops an answer",
    ),
  );
  return els.composer;
}

export function chatLayout() {
  const els = {};
  els.settings = h("section", {
    class: "chat-settings hidden",
    id: "chat-settings",
    "aria-label": "System prompt and options",
  });
  els.messages = h("div", {
    class: "chat-messages",
    id: "chat-messages",
    role: "log",
    "aria-live": "off",
  });
  const main = h(
    "section",
    { class: "chat-main" },
    header(els),
    els.settings,
    els.messages,
    composer(els),
  );
  els.layout = h(
    "div",
    { class: "chat", id: "chat" },
    sidebar(els),
    main,
    h("div", { class: "chat-scrim", onclick: () => els.layout.removeAttribute("data-side") }),
  );
  return els;
}
