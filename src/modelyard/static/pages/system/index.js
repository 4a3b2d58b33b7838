// System: disk of the models directory, RAM, CPU, NVIDIA GPUs and what each running model uses.
import { h, render } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { clock } from "../../js/format.js";
import { loadKinds } from "../../js/kinds.js";
import { toastError } from "../../js/toast.js";
import { containerTable } from "./containers.js";
import { historySection } from "./history.js";
import { resourceCards } from "./meters.js";
import { readContainers, readResources } from "./requests.js";
import { runningModels } from "./running.js";

const POLL_MS = 5000;
const RELOAD_DELAY_MS = 300;
const HISTORY_POLL_MS = 10000;

export default {
  async mount(root) {
    const sub = h("p", { class: "page-sub" }, "Reading…");
    const cards = h("div", { class: "grid system-grid", id: "system-cards" });
    const running = h("div", {});
    const boxed = h("div", {});
    const history = historySection();
    let inflight = false;
    async function load() {
      if (inflight) return;
      inflight = true;
      try {
        const [r, c] = await Promise.all([
          readResources(),
          readContainers(),
          loadKinds().catch(() => null),
        ]);
        sub.textContent = `Models directory: ${r.models_dir} · updated ${clock()}`;
        render(cards, resourceCards(r));
        render(running, runningModels(r));
        render(boxed, containerTable(c.containers));
      } catch (err) {
        toastError(err);
      } finally {
        inflight = false;
      }
    }
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "System"), sub),
        h(
          "div",
          { class: "toolbar" },
          h(
            "button",
            { class: "btn", type: "button", id: "refresh-system", onclick: load },
            "Refresh",
          ),
        ),
      ),
      cards,
      h("div", { class: "section" }, h("h2", {}, "Running models"), running),
      boxed,
      history.el,
    );
    let soon = null;
    const reloadSoon = () => {
      clearTimeout(soon);
      soon = setTimeout(load, RELOAD_DELAY_MS);
    };
    const loadHistory = () => history.load().catch(toastError);
    const timer = setInterval(load, POLL_MS);
    const historyTimer = setInterval(loadHistory, HISTORY_POLL_MS);
    const offState = events.on("model.state", reloadSoon);
    await load();
    loadHistory();
    return () => {
      clearInterval(timer);
      clearInterval(historyTimer);
      clearTimeout(soon);
      offState();
    };
  },
};
