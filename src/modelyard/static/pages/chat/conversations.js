// The list of conversations: search, open, rename in place, delete.
import { confirmDialog, h, render } from "../../js/dom.js";
import { ago } from "../../js/format.js";
import { icon } from "../../js/icons.js";
import { toast, toastError } from "../../js/toast.js";
import { deleteConversation, listConversations, updateConversation } from "./requests.js";

export async function loadList(chat) {
  try {
    chat.s.conversations = (await listConversations()).conversations;
  } catch (err) {
    toastError(err);
  }
  drawList(chat);
}

export function drawList(chat) {
  const q = chat.s.filter.trim().toLowerCase();
  const items = chat.s.conversations.filter((c) => !q || c.title.toLowerCase().includes(q));
  render(
    chat.els.list,
    items.length
      ? items.map((c) => conversationItem(chat, c))
      : h("li", { class: "conv-empty muted" }, q ? "No chat matches." : "No chats yet."),
  );
}

function conversationItem(chat, c) {
  const active = chat.s.current?.id === c.id;
  const name = h("span", { class: "conv-title" }, c.title);
  const action = (kind, label, iconName, onclick) =>
    h(
      "button",
      {
        class: `btn btn-small btn-ghost${kind === "delete" ? " btn-danger" : ""}`,
        type: "button",
        "aria-label": `${label} ${c.title}`,
        title: label,
        "data-action": kind,
        onclick,
      },
      icon(iconName, 14),
    );
  const item = h(
    "li",
    { class: "conv-item", dataset: { id: c.id }, "aria-current": active ? "true" : false },
    h(
      "a",
      {
        class: "conv-open",
        href: `#/chat/${encodeURIComponent(c.id)}`,
        onclick: () => chat.els.layout.removeAttribute("data-side"),
      },
      name,
      h("span", { class: "conv-sub" }, `${c.model} · ${ago(c.updated_at)}`),
    ),
    h(
      "div",
      { class: "conv-actions" },
      action("rename", "Rename", "pencil", () => rename(chat, c, item)),
      action("delete", "Delete", "trash", () => remove(chat, c)),
    ),
  );
  return item;
}

async function saveTitle(chat, c, value) {
  try {
    const updated = await updateConversation(c.id, { title: value });
    c.title = updated.title;
    if (chat.s.current?.id === c.id) {
      chat.s.current.title = updated.title;
      chat.els.title.textContent = updated.title;
    }
  } catch (err) {
    toastError(err);
  }
}

function rename(chat, c, item) {
  const field = h("input", {
    class: "conv-rename",
    value: c.title,
    maxlength: 200,
    "aria-label": "New title",
  });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const value = field.value.trim();
    if (save && value && value !== c.title) await saveTitle(chat, c, value);
    drawList(chat);
  };
  field.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === "Escape") {
      ev.preventDefault();
      finish(ev.key === "Enter");
    }
  });
  field.addEventListener("blur", () => finish(true));
  item.querySelector(".conv-open").replaceWith(field);
  field.focus();
  field.select();
}

async function remove(chat, c) {
  const ok = await confirmDialog({
    title: `Delete “${c.title}”?`,
    body: "The conversation and all its messages are deleted.",
    confirm: "Delete",
    danger: true,
  });
  if (!ok) return;
  try {
    await deleteConversation(c.id);
    chat.s.conversations = chat.s.conversations.filter((x) => x.id !== c.id);
    if (chat.s.current?.id === c.id) location.hash = "#/chat";
    drawList(chat);
    toast("Chat deleted", { kind: "success", timeout: 2000 });
  } catch (err) {
    toastError(err);
  }
}
