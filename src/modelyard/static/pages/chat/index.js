// Chat: conversations on the left, the chosen one on the right with its answers streaming
// in as Markdown. Enter sends, Shift+Enter adds a line, Escape stops an answer. Route:
// #/chat (a new chat) or #/chat/<conversation id>.
import { afterPaint, h, render } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { loadKinds } from "../../js/kinds.js";
import { toastError } from "../../js/toast.js";
import { drawList, loadList } from "./conversations.js";
import { chatLayout } from "./layout.js";
import { drawPicker, LAST_MODEL, loadModels, pickModel, readModels } from "./picker.js";
import { markRemote, refreshCurrent } from "./remote.js";
import { readConversation, updateConversation } from "./requests.js";
import { regenerate, sendText, setBusy, stop, stopNow } from "./sending.js";
import { settingsForm } from "./settings.js";
import { drawMessages, nearBottom, scrollToEnd } from "./thread.js";

const MAX_INPUT_PX = 220;
const RELOAD_DELAY_MS = 300;

function chatState() {
  return {
    models: [],
    conversations: [],
    current: null, // the open conversation, with its messages
    views: [], // one view per message of the thread
    generating: null, // this window's answer being written: {controller, answer, conversation}
    remote: false, // the open chat's answer is being written elsewhere
    stick: false, // the thread follows new text (the reader is at the bottom)
    draft: { system: "", options: {} }, // settings of a chat not yet created
    choice: localStorage.getItem(LAST_MODEL),
    filter: "",
    timers: { remote: null, list: null, models: null, conversation: null },
  };
}

/** The page object the chat's parts share: its state, its elements and its redraws. */
function chatPage(els) {
  const chat = { s: chatState(), els };
  Object.assign(chat, {
    drawList: () => drawList(chat),
    loadList: () => loadList(chat),
    drawPicker: () => drawPicker(chat),
    drawMessages: () => drawMessages(chat),
    scrollToEnd: (force) => scrollToEnd(chat, force),
    setBusy: (busy) => setBusy(chat, busy),
    regenerate: () => regenerate(chat),
    autosize() {
      els.input.style.height = "auto";
      els.input.style.height = `${Math.min(els.input.scrollHeight, MAX_INPUT_PX)}px`;
    },
  });
  return chat;
}

function toggleSettings(chat, show = chat.els.settings.classList.contains("hidden")) {
  chat.els.settings.classList.toggle("hidden", !show);
  chat.els.settingsToggle.setAttribute("aria-expanded", String(show));
  if (show) chat.els.settings.querySelector("textarea")?.focus();
}

function drawSettings(chat) {
  const { s } = chat;
  const save = async (system, options) => {
    if (s.current) {
      const updated = await updateConversation(s.current.id, { system, options });
      Object.assign(s.current, { system: updated.system, options: updated.options });
    } else {
      s.draft = { system, options };
    }
    toggleSettings(chat, false);
  };
  const form = settingsForm(s.current || s.draft, save, () => toggleSettings(chat, false));
  render(chat.els.settings, h("h2", {}, "System prompt and options"), form);
}

/** Open conversation `id` (null: a new chat). */
async function open(chat, id) {
  const { s, els } = chat;
  if (s.generating) stopNow(chat);
  if (id && s.current?.id === id) return;
  try {
    s.current = id ? await readConversation(id) : null;
  } catch (err) {
    toastError(err);
    location.hash = "#/chat";
    return;
  }
  markRemote(chat); // its answer may be being written elsewhere (`generating`)
  els.title.textContent = s.current?.title || "New chat";
  chat.drawMessages();
  drawSettings(chat);
  chat.drawPicker();
  chat.drawList();
  if (id) chat.scrollToEnd(true);
  else els.input.focus();
}

function wireComposer(chat) {
  const { els } = chat;
  els.input.addEventListener("input", chat.autosize);
  els.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendText(chat, els.input.value);
    }
  });
  els.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendText(chat, els.input.value);
  });
  els.stop.addEventListener("click", () => stop(chat));
  els.messages.addEventListener("scroll", () => {
    chat.s.stick = nearBottom(chat);
  });
  els.newChat.addEventListener("click", () => {
    if (location.hash !== "#/chat") location.hash = "#/chat";
    else {
      els.layout.removeAttribute("data-side");
      open(chat, null);
    }
  });
  els.settingsToggle.addEventListener("click", () => toggleSettings(chat));
  els.menu.addEventListener("click", () => els.layout.toggleAttribute("data-side"));
  els.search.addEventListener("input", () => {
    chat.s.filter = els.search.value;
    chat.drawList();
  });
  els.picker.addEventListener("change", () => pickModel(chat));
}

/** Live updates: the list, the models, and the open chat when another window writes in it. */
function follow(chat) {
  const { s } = chat;
  const later = (timer, fn) => {
    clearTimeout(s.timers[timer]);
    s.timers[timer] = setTimeout(fn, RELOAD_DELAY_MS);
  };
  const reloadModels = () => later("models", () => loadModels(chat));
  const offs = [
    events.on("conversation.changed", (ev) => {
      later("list", chat.loadList);
      const id = ev.data?.id;
      if (id && id === s.current?.id && s.generating?.conversation !== id) {
        clearTimeout(s.timers.conversation);
        s.timers.conversation = setTimeout(() => refreshCurrent(chat), 100);
      }
    }),
    events.on("catalog.changed", reloadModels),
    events.on("model.state", reloadModels),
  ];
  return () => {
    for (const off of offs) off();
  };
}

export default {
  async mount(root, { args }) {
    const els = chatLayout();
    render(root, els.layout);
    const chat = chatPage(els);
    const fitHeight = () => {
      const top = Math.max(0, root.getBoundingClientRect().top + window.scrollY);
      els.layout.style.setProperty("--chat-top", `${top}px`);
    };
    fitHeight();
    window.addEventListener("resize", fitHeight);
    const onKey = (ev) => {
      if (ev.key === "Escape" && (chat.s.generating || chat.s.remote)) stop(chat);
    };
    document.addEventListener("keydown", onKey);
    wireComposer(chat);
    const unfollow = follow(chat);
    this.update = (newArgs) => {
      // Another chat was picked: the list, a drawer on a phone, makes way for it. (Not on
      // the first open: a menu opened while the page loads stays open.)
      els.layout.removeAttribute("data-side");
      open(chat, newArgs[0] || null);
    };
    const models = readModels(chat); // asked for already: drawn with the chat opened below
    await Promise.all([loadKinds().catch(toastError), chat.loadList()]);
    await afterPaint(); // the list shows before the picker's thousand models are drawn
    await models;
    await open(chat, args[0] || null);
    return () => {
      stopNow(chat);
      for (const timer of Object.values(chat.s.timers)) clearTimeout(timer);
      unfollow();
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("resize", fitHeight);
    };
  },
};
