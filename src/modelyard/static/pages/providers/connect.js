// How to reach modelyard and the servers behind it: URLs and copyable snippets.
import { h, render } from "../../js/dom.js";
import { toast } from "../../js/toast.js";
import { connectionInfo } from "./requests.js";

function snippet(name, code) {
  const copy = () => navigator.clipboard?.writeText(code).then(() => toast("Copied"));
  return h(
    "div",
    { class: "section" },
    h(
      "div",
      { class: "row" },
      h("strong", {}, name),
      h("button", { class: "btn btn-small", onclick: copy }, "Copy"),
    ),
    h("pre", { class: "log" }, code),
  );
}

/** Fill `box` with the connection details (left empty when they cannot be read: optional). */
export async function drawConnection(box) {
  let info;
  try {
    info = await connectionInfo();
  } catch {
    return;
  }
  const webui = info.open_webui;
  render(
    box,
    h(
      "details",
      { class: "panel" },
      h("summary", {}, h("strong", {}, "Connect to modelyard and your servers")),
      h(
        "dl",
        { class: "kv connect-urls" },
        h("dt", {}, "modelyard API"),
        h("dd", { class: "mono" }, info.modelyard),
        h("dt", {}, "Events"),
        h("dd", { class: "mono" }, info.events),
        webui
          ? [
              h("dt", {}, "Open WebUI"),
              h("dd", {}, h("a", { href: webui, target: "_blank", rel: "noopener" }, webui)),
            ]
          : null,
      ),
      Object.entries(info.snippets).map(([name, code]) => snippet(name, code)),
    ),
  );
}
