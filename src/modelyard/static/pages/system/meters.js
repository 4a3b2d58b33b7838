// Disk, memory, CPU and GPU cards, each a meter of how full it is.
import { h } from "../../js/dom.js";
import { bytes } from "../../js/format.js";

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

const card = (...children) => h("article", { class: "panel card" }, ...children);

function gpuCards(gpus) {
  if (!gpus.length) {
    return [
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
  }
  return gpus.map((g) => {
    const busy = g.utilization !== null ? ` · ${g.utilization} % busy` : "";
    return h(
      "article",
      { class: "panel card", "data-testid": "gpu" },
      meter(`GPU ${g.index} · ${g.name}`, g.memory_used, g.memory_total, {
        detail: `${bytes(g.memory_free)} free of ${bytes(g.memory_total)} VRAM${busy}`,
      }),
    );
  });
}

export function resourceCards({ disk, memory, cpu, gpus }) {
  const cores = `${cpu.count} logical cores${cpu.physical ? ` (${cpu.physical} physical)` : ""}`;
  return [
    card(
      meter("Disk (models directory)", disk.total - disk.free, disk.total, {
        testid: "disk",
        detail: `${bytes(disk.free)} free of ${bytes(disk.total)} · ${disk.path}`,
      }),
    ),
    card(
      meter("Memory (RAM)", memory.total - memory.available, memory.total, {
        testid: "ram",
        detail: `${bytes(memory.available)} available of ${bytes(memory.total)}`,
      }),
    ),
    card(
      meter("CPU", cpu.percent, 100, {
        testid: "cpu",
        detail: `${cores} · load ${cpu.load_avg.join(" / ")}`,
      }),
    ),
    ...gpuCards(gpus),
  ];
}
