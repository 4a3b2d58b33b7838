// An answer another window (or the CLI) writes in the open chat shows as being written, with
// Stop; the chat is read again on its conversation.changed events, and polled meanwhile.
import { ApiError } from "../../js/api.js";
import { readConversation } from "./requests.js";

const REMOTE_STATUS = "Another window is writing this answer…";
const REMOTE_POLL_MS = 2000;

/** Messages this page sent have no id until reloaded: they match on what they say. */
function sameMessages(shown, stored) {
  return (
    shown.length === stored.length &&
    shown.every(
      (m, i) =>
        m.role === stored[i].role &&
        m.state === stored[i].state &&
        m.content === stored[i].content &&
        (!m.id || m.id === stored[i].id),
    )
  );
}

/** Note whether the open chat's answer is being written elsewhere (its `generating`). */
export function markRemote(chat) {
  const { s } = chat;
  clearTimeout(s.timers.remote);
  const c = s.current;
  s.remote = Boolean(c?.generating && s.generating?.conversation !== c.id);
  if (s.remote) {
    const last = c.messages[c.messages.length - 1];
    if (last?.role === "assistant" && last.state === "streaming") last.status = REMOTE_STATUS;
    else {
      c.messages.push({
        role: "assistant",
        content: "",
        state: "streaming",
        status: REMOTE_STATUS,
        model: c.model,
        provider: c.provider,
      });
    }
    s.timers.remote = setTimeout(() => refreshCurrent(chat), REMOTE_POLL_MS);
  }
  chat.setBusy(Boolean(s.generating) || s.remote);
}

/** Read the open chat again (unless this page is writing its answer). */
export async function refreshCurrent(chat) {
  const { s } = chat;
  const c = s.current;
  const notMine = () => s.current === c && s.generating?.conversation !== c.id;
  if (!c || !notMine()) return;
  let fresh;
  try {
    fresh = await readConversation(c.id);
  } catch (err) {
    if (s.current === c && err instanceof ApiError && err.status === 404) location.hash = "#/chat";
    else if (s.current === c && s.remote) {
      s.timers.remote = setTimeout(() => refreshCurrent(chat), REMOTE_POLL_MS);
    }
    return;
  }
  if (!notMine()) return;
  const changed =
    s.remote ||
    fresh.generating ||
    fresh.title !== c.title ||
    !sameMessages(c.messages, fresh.messages);
  s.current = fresh;
  markRemote(chat);
  if (changed) {
    chat.els.title.textContent = fresh.title;
    chat.drawMessages();
    chat.drawPicker();
    chat.scrollToEnd();
  }
}
