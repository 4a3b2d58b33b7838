// Sending a message and streaming its answer; regenerating; stopping (this window's answer
// or one another window writes).
import { ApiError } from "../../js/api.js";
import { toast, toastError } from "../../js/toast.js";
import { chosenModel } from "./picker.js";
import { refreshCurrent } from "./remote.js";
import { createConversation, readEvents, sendMessage, stopAnswer } from "./requests.js";
import { nearBottom, refreshViews, scrollToEnd } from "./thread.js";

export function setBusy(chat, busy) {
  const { send, stop, picker } = chat.els;
  send.classList.toggle("hidden", busy);
  stop.classList.toggle("hidden", !busy);
  picker.disabled = busy || !picker.options.length || !picker.value;
}

/** The open chat, created (with the chosen model and the draft settings) if it is new. */
async function ensureConversation(chat) {
  const { s } = chat;
  if (s.current) return s.current;
  const m = chosenModel(chat);
  if (!m) {
    throw new ApiError(400, {
      detail: "Pick a model first.",
      hint: "Models that can chat appear in the list.",
    });
  }
  const body = {
    provider: m.provider,
    model: m.name,
    system: s.draft.system,
    options: s.draft.options,
  };
  if (m.instance_id) body.instance_id = m.instance_id;
  const created = await createConversation(body);
  s.current = { ...created, messages: [] };
  s.conversations.unshift(created);
  history.replaceState(null, "", `#/chat/${created.id}`);
  chat.els.title.textContent = created.title;
  chat.drawMessages();
  return s.current;
}

function retitle(chat, conv, title) {
  if (!title || conv.title === title) return;
  conv.title = title;
  if (chat.s.current === conv) chat.els.title.textContent = title;
  const listed = chat.s.conversations.find((c) => c.id === conv.id);
  if (listed) {
    listed.title = title;
    chat.drawList();
  }
}

/** Apply one event of the answer's stream to `answer`. */
function applyEvent(chat, ev, answer, conv) {
  if (ev.type === "start") {
    Object.assign(answer, { id: ev.message_id, model: ev.model, provider: ev.provider });
    retitle(chat, conv, ev.title);
  } else if (ev.type === "status") {
    answer.status = ev.text;
  } else if (ev.type === "token") {
    answer.content += ev.text;
  } else if (ev.type === "done") {
    const { state, ttft_ms, tokens_per_s, usage, trimmed } = ev;
    Object.assign(answer, { state, ttft_ms, tokens_per_s, usage, trimmed });
  } else if (ev.type === "error") {
    Object.assign(answer, { state: "error", error: ev.detail, code: ev.code, hint: ev.hint });
  }
}

async function stream(chat, body, answer) {
  const { s } = chat;
  const conv = s.current;
  const controller = new AbortController();
  s.generating = { controller, answer, conversation: conv.id };
  setBusy(chat, true);
  refreshViews(chat);
  let frame = 0;
  const view = s.views[s.views.length - 1];
  const paint = () => {
    frame = 0;
    view.update({ isLast: true, busy: true });
    scrollToEnd(chat);
  };
  const schedule = () => {
    s.stick = s.stick || nearBottom(chat);
    if (!frame) frame = requestAnimationFrame(paint);
  };
  try {
    const resp = await sendMessage(conv.id, body, controller.signal);
    await readEvents(resp, (ev) => {
      applyEvent(chat, ev, answer, conv);
      schedule();
    });
  } catch (err) {
    if (err.name === "AbortError") answer.state = "stopped";
    else {
      const { code, hint } = err;
      Object.assign(answer, { state: "error", error: err.detail || err.message, code, hint });
    }
  } finally {
    if (answer.state === "streaming") answer.state = "stopped";
    cancelAnimationFrame(frame);
    if (s.generating?.answer === answer) s.generating = null;
    setBusy(chat, false);
    if (s.current === conv) {
      refreshViews(chat);
      scrollToEnd(chat);
    }
    chat.loadList();
  }
}

function pendingAnswer(chat) {
  const m = chosenModel(chat);
  return {
    role: "assistant",
    content: "",
    state: "streaming",
    status: "",
    model: m?.name,
    provider: m?.provider,
  };
}

export async function sendText(chat, text) {
  const { s, els } = chat;
  if (s.generating || !text.trim()) return;
  if (s.remote) {
    toast("An answer is still being written in this chat: wait for it, or stop it.");
    return;
  }
  try {
    await ensureConversation(chat);
  } catch (err) {
    toastError(err);
    return;
  }
  els.input.value = "";
  chat.autosize();
  const answer = pendingAnswer(chat);
  s.current.messages.push({ role: "user", content: text, state: "complete" }, answer);
  s.stick = true;
  chat.drawMessages();
  scrollToEnd(chat, true);
  await stream(chat, { content: text }, answer);
}

export async function regenerate(chat) {
  const { s } = chat;
  if (s.generating || s.remote || !s.current) return;
  const msgs = s.current.messages;
  while (msgs.length && msgs[msgs.length - 1].role === "assistant") msgs.pop();
  const answer = pendingAnswer(chat);
  msgs.push(answer);
  s.stick = true;
  chat.drawMessages();
  scrollToEnd(chat, true);
  await stream(chat, { regenerate: true }, answer);
}

export async function stop(chat) {
  const { s, els } = chat;
  const mine = s.generating;
  const elsewhere = !mine && s.remote ? s.current : null; // written by another window
  if (!mine && !elsewhere) return;
  els.stop.disabled = true;
  try {
    await stopAnswer(mine ? mine.conversation : elsewhere.id);
    if (elsewhere) await refreshCurrent(chat);
  } catch (err) {
    if (mine)
      mine.controller.abort(); // closing the request stops the answer too
    else toastError(err);
  } finally {
    els.stop.disabled = false;
  }
}

/** Drop this window's answer at once (leaving the chat or the page). */
export function stopNow(chat) {
  chat.s.generating?.controller.abort();
  chat.s.generating = null;
  setBusy(chat, false);
}
