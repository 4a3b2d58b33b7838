// Gateway: how apps reach the models through modelyard, and what they ask of it — a
// composition of sections (sections.js says what a section is).
import { h, render } from "../../js/dom.js";
import { toastError } from "../../js/toast.js";
import { readGatewayInfo } from "./requests.js";
import { SECTIONS } from "./sections.js";

async function mountSection(section, ctx) {
  const body = h("div", { class: "gateway-body" });
  const el = h(
    "section",
    { class: "section", id: `gateway-${section.id}`, dataset: { section: section.id } },
    h("h2", {}, section.title),
    body,
  );
  try {
    return { el, mounting: Promise.resolve(section.mount(body, ctx)) };
  } catch (err) {
    return { el, mounting: Promise.reject(err) };
  }
}

export default {
  async mount(root) {
    const sub = h("p", { class: "page-sub" }, "Reading…");
    render(root, h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Gateway"), sub)));
    let info;
    try {
      info = await readGatewayInfo();
    } catch (err) {
      sub.textContent = "The gateway's details could not be read.";
      toastError(err);
      return undefined;
    }
    sub.textContent = `${info.base_url}${info.tls ? " · HTTPS" : ""} · OpenAI, Anthropic and Ollama APIs on one port`;
    const ctx = { info };
    const mounted = await Promise.all(SECTIONS.map((section) => mountSection(section, ctx)));
    root.append(...mounted.map((m) => m.el));
    const cleanups = await Promise.all(
      mounted.map(({ el, mounting }) =>
        mounting.catch((err) => {
          el.append(h("p", { class: "empty" }, `This section failed: ${err.message || err}`));
          toastError(err);
        }),
      ),
    );
    return () => {
      for (const cleanup of cleanups) if (typeof cleanup === "function") cleanup();
    };
  },
};
