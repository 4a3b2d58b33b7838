// Endpoints: the gateway's URLs and a snippet per client, each with a copy button.
import { append, h } from "../../js/dom.js";
import { copyText } from "../../js/markdown.js";

const CLIENTS = [
  ["openai", "OpenAI SDK (Python)"],
  ["anthropic", "Anthropic SDK (Python)"],
  ["ollama", "Ollama client (Python)"],
  ["curl", "curl"],
  ["open_webui", "Open WebUI"],
];

function copyButton(value, label) {
  const button = h(
    "button",
    { class: "btn btn-small", type: "button", "aria-label": label },
    "Copy",
  );
  button.addEventListener("click", () => copyText(value, button));
  return button;
}

function url(name, value) {
  return [
    h("dt", {}, name),
    h(
      "dd",
      {},
      h("code", { class: "mono" }, value),
      " ",
      copyButton(value, `Copy the ${name} URL`),
    ),
  ];
}

function snippet(id, label, code) {
  return h(
    "div",
    { class: "snippet", dataset: { client: id } },
    h(
      "div",
      { class: "row" },
      h("strong", {}, label),
      copyButton(code, `Copy the ${label} snippet`),
    ),
    h("pre", { class: "log" }, code),
  );
}

export default {
  id: "endpoints",
  title: "Endpoints",
  mount(root, { info }) {
    const { endpoints, models, snippets } = info;
    append(root, [
      h(
        "dl",
        { class: "kv gateway-urls" },
        url("OpenAI", endpoints.openai),
        url("Anthropic", endpoints.anthropic),
        url("Ollama", endpoints.ollama),
      ),
      h(
        "p",
        { class: "gateway-note" },
        models.length
          ? `${models.length} model${models.length === 1 ? "" : "s"} usable; the snippets use ${models[0]}. From another machine, set MODELYARD_API_KEY to a key (Keys, below); on this machine the snippets work without one.`
          : "No model is usable yet: the snippets say MODEL. Get one on the Get models page.",
      ),
      CLIENTS.map(([id, label]) => snippet(id, label, snippets[id])),
    ]);
  },
};
