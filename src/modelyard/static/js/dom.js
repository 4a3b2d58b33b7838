// Safe DOM building: text always goes through textContent, never innerHTML.

/**
 * h("button", {class: "btn", onclick: fn, disabled: true}, "Label", childNode)
 * Attributes starting with "on" become listeners; `dataset`, `style` objects are applied;
 * null/false children are skipped; strings become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Resolves once the browser has drawn a frame: what was rendered before it is on screen. */
export const afterPaint = () =>
  new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));

/** Replace an element's children. */
export function render(el, ...children) {
  clear(el);
  return append(el, children);
}

/** A modal confirmation; resolves true when confirmed. */
export function confirmDialog({ title, body, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "dialog" },
      h(
        "form",
        { method: "dialog" },
        h("h2", {}, title),
        h("p", {}, body),
        h(
          "div",
          { class: "dialog-actions" },
          h("button", { value: "cancel", class: "btn" }, "Cancel"),
          h(
            "button",
            { value: "ok", class: danger ? "btn btn-danger" : "btn btn-primary" },
            confirm,
          ),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
