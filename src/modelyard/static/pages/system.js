// System: disk of the models directory, RAM, CPU, NVIDIA GPUs and what each running model uses.
import { get } from "../js/api.js";
import { h, render } from "../js/dom.js";
import { events } from "../js/events.js";
import { bytes } from "../js/format.js";
import { toastError } from "../js/toast.js";

const POLL_MS = 5000;

function meter(label, used, total, { detail = "", testid } = {}) {
  const pct = total ? Math.min(100, (100 * used) / total) : 0;
  const level = pct >= 90 ? "failed" : pct >= 75 ? "paused" : "ok";
  return h(
    "div",
    { class: "meter", "data-testid": testid },
    h(
      "div",
      { class: "row" },
      h("strong", {}, label),
      h("span", { class: "spacer" }),
      h("span", { class: "mono small" }, `${pct.toFixed(0)} %`),
    ),
    h(
      "div",
      {
        class: "progress",
        dataset: { state: level },
        role: "meter",
        "aria-label": label,
        "aria-valuemin": "0",
        "aria-valuemax": String(total || 0),
        "aria-valuenow": String(used || 0),
      },
      h("span", { style: { width: `${pct}%` } }),
    ),
    h("div", { class: "muted small" }, detail),
  );
}

function resourceCards(r) {
  const disk = r.disk;
  const mem = r.memory;
  const cpu = r.cpu;
  const gpus = r.gpus.length
    ? r.gpus.map((g) =>
        h(
          "article",
          { class: "panel card", "data-testid": "gpu" },
          meter(`GPU ${g.index} · ${g.name}`, g.memory_used, g.memory_total, {
            detail: `${bytes(g.memory_free)} free of ${bytes(g.memory_total)} VRAM${g.utilization !== null ? ` · ${g.utilization} % busy` : ""}`,
          }),
        ),
      )
    : [
        h(
          "article",
          { class: "panel card", "data-testid": "gpu-none" },
          h("strong", {}, "GPU"),
          h(
            "p",
            { class: "muted" },
            "No NVIDIA GPU visible (NVML not available); models run on the CPU and system RAM.",
          ),
        ),
      ];
  return [
    h(
      "article",
      { class: "panel card" },
      meter("Disk (models directory)", disk.total - disk.free, disk.total, {
        testid: "disk",
        detail: `${bytes(disk.free)} free of ${bytes(disk.total)} · ${disk.path}`,
      }),
    ),
    h(
      "article",
      { class: "panel card" },
      meter("Memory (RAM)", mem.total - mem.available, mem.total, {
        testid: "ram",
        detail: `${bytes(mem.available)} available of ${bytes(mem.total)}`,
      }),
    ),
    h(
      "article",
      { class: "panel card" },
      meter("CPU", cpu.percent, 100, {
        testid: "cpu",
        detail: `${cpu.count} logical cores${cpu.physical ? ` (${cpu.physical} physical)` : ""} · load ${cpu.load_avg.join(" / ")}`,
      }),
    ),
    ...gpus,
  ];
}

function modelsTable(r) {
  if (!r.models.length) {
    return h(
      "div",
      { class: "panel empty", id: "running-models" },
      h("h2", {}, "No model is running"),
      h("p", {}, "Start one on the Models page; it will show here with the memory it uses."),
    );
  }
  return h(
    "div",
    { class: "panel table-wrap system-table", id: "running-models" },
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "Model"),
          h("th", {}, "Provider"),
          h("th", {}, "Status"),
          h("th", { class: "num" }, "Memory"),
          h("th", { class: "num col-wide" }, "VRAM"),
          h("th", { class: "num col-wide" }, "PID"),
        ),
      ),
      h(
        "tbody",
        {},
        r.models.map((m) =>
          h(
            "tr",
            { dataset: { name: m.name } },
            h("td", { class: "model-cell" }, m.name),
            h("td", {}, `${m.provider} · ${m.instance_id}`),
            h("td", {}, h("span", { class: "badge", dataset: { state: m.status } }, m.status)),
            h(
              "td",
              { class: "num", "data-testid": "model-memory" },
              m.memory ? bytes(m.memory) : "—",
            ),
            h("td", { class: "num col-wide" }, m.vram ? bytes(m.vram) : "—"),
            h("td", { class: "num mono col-wide" }, m.pid ?? "—"),
          ),
        ),
      ),
      h(
        "tfoot",
        {},
        h(
          "tr",
          {},
          h("td", { colspan: "3" }, h("strong", {}, "Total")),
          h("td", { class: "num" }, h("strong", {}, bytes(r.models_memory))),
          h("td", { colspan: "2", class: "col-wide" }),
        ),
      ),
    ),
  );
}

export default {
  async mount(root) {
    const sub = h("p", { class: "page-sub" }, "Reading…");
    const cards = h("div", { class: "grid system-grid", id: "system-cards" });
    const running = h("div", {});
    const refresh = h("button", { class: "btn", type: "button", id: "refresh-system" }, "Refresh");
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "System"), sub),
        h("div", { class: "toolbar" }, refresh),
      ),
      cards,
      h("div", { class: "section" }, h("h2", {}, "Running models"), running),
    );

    let inflight = false;
    async function load() {
      if (inflight) return;
      inflight = true;
      try {
        const r = await get("/api/system/resources");
        sub.textContent = `Models directory: ${r.models_dir} · updated ${new Date().toLocaleTimeString()}`;
        render(cards, resourceCards(r));
        render(running, modelsTable(r));
      } catch (err) {
        toastError(err);
      } finally {
        inflight = false;
      }
    }
    let soon = null;
    const reloadSoon = () => {
      clearTimeout(soon);
      soon = setTimeout(load, 300);
    };
    refresh.addEventListener("click", load);
    const timer = setInterval(load, POLL_MS);
    const offState = events.on("model.state", reloadSoon);
    await load();
    return () => {
      clearInterval(timer);
      clearTimeout(soon);
      offState();
    };
  },
};
