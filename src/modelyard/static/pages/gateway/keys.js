// Keys: the gateway's keys by prefix (models, limits, expiry, last use); a form that creates
// one and shows its secret once, with a copy button; revoke after a confirmation.
import { del, get, post } from "../../js/api.js";
import { confirmDialog, h, render } from "../../js/dom.js";
import { ago } from "../../js/format.js";
import { copyText } from "../../js/markdown.js";
import { toast, toastError } from "../../js/toast.js";

const KEYS = "/api/keys";
const LIMITS = [
  ["requests_per_minute", "Requests / min"],
  ["tokens_per_minute", "Tokens / min"],
  ["concurrent_requests", "At once"],
];

const limitText = (value) => (value === null || value === undefined ? "–" : String(value));

function row(key, revoke) {
  return h(
    "tr",
    { dataset: { key: key.id, prefix: key.prefix } },
    h("td", {}, key.name),
    h("td", { class: "mono" }, `${key.prefix}…`),
    h("td", {}, key.scopes.join(", ")),
    h("td", { class: "mono" }, key.models ? key.models.join(", ") : "all"),
    LIMITS.map(([name]) => h("td", { class: "num" }, limitText(key.limits[name]))),
    h("td", {}, key.expires_at ? new Date(key.expires_at).toLocaleString() : "never"),
    h("td", {}, key.last_used_at ? ago(key.last_used_at) : "never"),
    h(
      "td",
      {},
      h(
        "button",
        {
          class: "btn btn-small btn-danger",
          type: "button",
          "aria-label": `Revoke ${key.name} (${key.prefix}…)`,
          onclick: () => revoke(key),
        },
        "Revoke",
      ),
    ),
  );
}

/** The create form's body for the API: empty fields are unlimited / every model / never. */
function request(form) {
  const data = new FormData(form);
  const number = (name) => {
    const value = String(data.get(name) || "").trim();
    return value ? Number(value) : null;
  };
  const models = String(data.get("models") || "")
    .split(/[\s,]+/)
    .filter(Boolean);
  const expires = String(data.get("expires_at") || "");
  const body = {
    name: String(data.get("name") || "").trim(),
    scopes: [String(data.get("scope") || "inference")],
    models: models.length ? models : null,
    limits: Object.fromEntries(LIMITS.map(([name]) => [name, number(name)])),
  };
  if (expires) body.expires_at = new Date(expires).toISOString();
  return body;
}

function createForm(onCreated) {
  const input = (name, attrs) =>
    h("input", { name, id: `key-${name}`, autocomplete: "off", ...attrs });
  const label = (name, text, control) =>
    h("label", { class: "field", for: `key-${name}` }, h("span", {}, text), control);
  const form = h(
    "form",
    { class: "panel form key-form", id: "key-form" },
    label("name", "Name", input("name", { required: true, maxlength: 128 })),
    label(
      "scope",
      "Scope",
      h(
        "select",
        { name: "scope", id: "key-scope" },
        ["inference", "read", "admin"].map((s) => h("option", { value: s }, s)),
      ),
    ),
    label(
      "models",
      "Models (patterns, e.g. llama* ollama/*; empty: all)",
      input("models", { placeholder: "all models" }),
    ),
    label("expires_at", "Expires", input("expires_at", { type: "datetime-local" })),
    LIMITS.map(([name, text]) =>
      label(name, text, input(name, { type: "number", min: 1, placeholder: "unlimited" })),
    ),
    h("button", { class: "btn btn-primary", type: "submit" }, "Create key"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await post(KEYS, request(form));
      form.reset();
      onCreated(created);
    } catch (err) {
      toastError(err);
    }
  });
  return form;
}

function secretBox(created) {
  const button = h("button", { class: "btn btn-small", type: "button" }, "Copy");
  button.addEventListener("click", () => copyText(created.key, button));
  return h(
    "div",
    { class: "panel key-secret", id: "key-secret" },
    h("p", {}, `The secret of ${created.name} — shown only now; modelyard keeps its hash:`),
    h("code", { class: "mono", id: "key-secret-value" }, created.key),
    " ",
    button,
  );
}

export default {
  id: "keys",
  title: "Keys",
  async mount(root) {
    const body = h("tbody", { id: "key-rows" });
    const secret = h("div", {});
    async function load() {
      const { keys } = await get(KEYS);
      render(
        body,
        keys.length
          ? keys.map((key) => row(key, revoke))
          : h("tr", {}, h("td", { colspan: 10, class: "empty" }, "No key yet.")),
      );
    }
    async function revoke(key) {
      const ok = await confirmDialog({
        title: `Revoke ${key.name} (${key.prefix}…)?`,
        body: "Requests with this key are refused from the next one on. This cannot be undone.",
        confirm: "Revoke",
        danger: true,
      });
      if (!ok) return;
      try {
        await del(`${KEYS}/${encodeURIComponent(key.id)}`);
        toast(`Revoked ${key.name}.`);
        await load();
      } catch (err) {
        toastError(err);
      }
    }
    const form = createForm(async (created) => {
      render(secret, secretBox(created));
      await load();
    });
    const heads = ["Name", "Prefix", "Scope", "Models", ...LIMITS.map((l) => l[1])];
    root.append(
      form,
      secret,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "keys-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [...heads, "Expires", "Last used", ""].map((text) => h("th", {}, text)),
            ),
          ),
          body,
        ),
      ),
    );
    await load();
  },
};
