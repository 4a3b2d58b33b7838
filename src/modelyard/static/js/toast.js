// Toasts: short messages for results and errors. Errors stay until dismissed.
import { h } from "./dom.js";

export function toast(message, { kind = "info", hint = "", timeout } = {}) {
  const box = document.getElementById("toasts");
  const close = h("button", { class: "toast-close", "aria-label": "Dismiss" }, "×");
  const el = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    h(
      "div",
      { class: "toast-body" },
      h("div", { class: "toast-msg" }, message),
      hint ? h("div", { class: "toast-hint" }, hint) : null,
    ),
    close,
  );
  close.addEventListener("click", () => el.remove());
  box.append(el);
  const ttl = timeout ?? (kind === "error" ? 12000 : 4000);
  if (ttl > 0) setTimeout(() => el.remove(), ttl);
  return el;
}

export function toastError(err) {
  return toast(err.detail || err.message || String(err), { kind: "error", hint: err.hint || "" });
}
