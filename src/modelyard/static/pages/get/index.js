// Get models: recommended models, an Ollama name, any URL, or a Hugging Face repo's GGUF files
// with their quantization, size and whether they fit. Downloads run on the server; the
// Downloads page follows them.
import { h, render } from "../../js/dom.js";
import { can, loadKinds } from "../../js/kinds.js";
import { toastError } from "../../js/toast.js";
import { hubPanel } from "./hub.js";
import { ollamaPanel } from "./ollama-form.js";
import { recommendedSection } from "./recommended.js";
import { listInstances } from "./requests.js";
import { urlPanel } from "./url-form.js";

async function pullingInstances() {
  try {
    const [{ instances }] = await Promise.all([listInstances(), loadKinds()]);
    return instances.filter((i) => can(i.provider, "pulls"));
  } catch (err) {
    toastError(err);
    return [];
  }
}

export default {
  async mount(root) {
    const recommended = h("div", { class: "section", id: "recommended" });
    const forms = h("div", { class: "grid get-grid section" });
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          {},
          h("h1", {}, "Get models"),
          h(
            "p",
            { class: "page-sub" },
            "From the Ollama library, any URL, or Hugging Face. Downloads keep going on the server.",
          ),
        ),
        h(
          "div",
          { class: "toolbar" },
          h("a", { class: "btn", href: "#/downloads" }, "Downloads →"),
        ),
      ),
      recommended,
      forms,
      hubPanel(),
    );
    // Open on a wide screen; on a phone it would push the forms far down.
    const open = window.matchMedia("(min-width: 721px)").matches;
    await Promise.all([
      recommendedSection(recommended, { open }),
      pullingInstances().then((instances) => render(forms, ollamaPanel(instances), urlPanel())),
    ]);
  },
};
