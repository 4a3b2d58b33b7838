// Providers: the truth about every instance, with start/stop/restart, history and logs.
import { confirmDialog, h, render } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { loadKinds } from "../../js/kinds.js";
import { toast, toastError } from "../../js/toast.js";
import { instanceCard, instanceKey } from "./card.js";
import { drawConnection } from "./connect.js";
import { showInstanceForm } from "./form.js";
import { closePanel, fillPanel, panelBox } from "./panels.js";
import { controlInstance, listInstances, listStatuses, removeInstance } from "./requests.js";
import { instancesOf, loadSchedule, scheduleSection } from "./schedule.js";

const POLL_MS = 5000;
const RELOAD_MS = 300;
const AUTO_KEY = "modelyard.providers.autoRefresh";

function summaryText(state) {
  const items = [...state.instances.values()];
  const running = items.filter((i) => state.statuses.get(instanceKey(i))?.state === "RUNNING");
  const age = state.ageMs < 1000 ? "just now" : `${Math.round(state.ageMs / 1000)} s ago`;
  return `${running.length} of ${items.length} running · checked ${age}`;
}

function providersPage(els) {
  const state = {
    instances: new Map(), // key -> instance
    statuses: new Map(), // key -> status
    schedule: new Map(), // provider/instance/name -> the scheduler's view (model.schedule)
    open: new Map(), // key -> "history" | "logs" | null
    boxes: new Map(), // key -> {what, el, seq}: an open panel, kept across redraws
    busy: new Set(),
    ageMs: 0,
    reload: null, // a pending load after events about instances not listed yet
  };
  const card = (inst) =>
    instanceCard(page, inst, [scheduleSection(page, inst), panelBox(state, instanceKey(inst))]);
  const page = {
    state,
    async load(refresh = false) {
      try {
        const [inst, status, schedule] = await Promise.all([
          listInstances(),
          listStatuses(refresh),
          loadSchedule(),
        ]);
        state.instances = new Map(inst.instances.map((i) => [instanceKey(i), i]));
        if (schedule) state.schedule = schedule;
        state.statuses = new Map(status.providers.map((s) => [instanceKey(s), s]));
        state.ageMs = status.age_ms;
        page.draw();
        for (const k of state.boxes.keys()) fillPanel(state, k); // open panels show fresh content
      } catch (err) {
        toastError(err);
      }
    },
    draw() {
      els.summary.textContent = summaryText(state);
      for (const k of state.boxes.keys()) if (!state.instances.has(k)) closePanel(state, k);
      const items = [...state.instances.values()];
      render(
        els.list,
        items.length ? items.map(card) : h("div", { class: "empty" }, "No instances. Add one."),
      );
    },
    /** A status event: redraw that card alone. */
    update(s) {
      const k = instanceKey(s);
      state.statuses.set(k, s);
      if (!state.instances.has(k)) return page.load();
      page.redraw(k);
    },
    redraw(k) {
      const old = els.list.querySelector(`[data-key="${CSS.escape(k)}"]`);
      if (!old) return;
      old.replaceWith(card(state.instances.get(k)));
      if (state.open.get(k)) fillPanel(state, k);
    },
    loadSoon() {
      if (state.reload) return;
      state.reload = setTimeout(() => {
        state.reload = null;
        page.load();
      }, RELOAD_MS);
    },
    /** A model.schedule event: redraw the cards of the instances that run that model. */
    scheduled(view) {
      state.schedule.set(view.key, { ...view, seenAt: Date.now() });
      const serving = instancesOf(state.instances, view.key);
      if (!serving.length) return page.loadSoon(); // a local file's server that just appeared
      for (const inst of serving) page.redraw(instanceKey(inst));
    },
    async control(inst, action) {
      const k = instanceKey(inst);
      state.busy.add(k);
      page.draw();
      try {
        const status = await controlInstance(inst, action);
        state.statuses.set(k, status);
        const failed = status.state === "ERROR";
        toast(`${inst.provider}/${inst.id}: ${action} → ${status.state}`, {
          kind: failed ? "error" : "success",
          hint: failed ? status.hint : "",
        });
      } catch (err) {
        toastError(err);
      } finally {
        state.busy.delete(k);
        await page.load(true);
      }
    },
    async toggle(k, what) {
      state.open.set(k, state.open.get(k) === what ? null : what);
      page.draw();
      if (state.open.get(k)) await fillPanel(state, k);
    },
    edit: (inst) => showInstanceForm(els.form, inst, () => page.load(true)).catch(toastError),
    async remove(inst) {
      const ok = await confirmDialog({
        title: `Remove ${inst.provider}/${inst.id}?`,
        body: inst.managed
          ? "Its process is stopped first. Model files are not touched."
          : "modelyard forgets this instance. The server itself is not touched.",
        confirm: "Remove",
        danger: true,
      });
      if (!ok) return;
      try {
        await removeInstance(inst);
        toast(`Removed ${inst.provider}/${inst.id}`, { kind: "success" });
        await page.load();
      } catch (err) {
        toastError(err);
      }
    },
  };
  return page;
}

/** Auto-refresh: polls every POLL_MS while its switch is on (remembered in this browser). */
function autoRefresh(page, toggle) {
  let timer = null;
  const schedule = () => {
    clearInterval(timer);
    timer = toggle.checked ? setInterval(() => page.load(), POLL_MS) : null;
  };
  toggle.addEventListener("change", () => {
    localStorage.setItem(AUTO_KEY, toggle.checked ? "on" : "off");
    schedule();
    if (toggle.checked) page.load();
  });
  schedule();
  return () => clearInterval(timer);
}

function pageHead(page, els, autoToggle) {
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", {}, "Providers"), els.summary),
    h(
      "div",
      { class: "toolbar" },
      h(
        "label",
        { class: "switch", title: `Re-check every ${POLL_MS / 1000} s` },
        autoToggle,
        "Auto-refresh",
      ),
      h(
        "button",
        { class: "btn", id: "refresh-all", onclick: () => page.load(true) },
        "Refresh all",
      ),
      h(
        "button",
        { class: "btn btn-primary", id: "add-instance", onclick: () => page.edit(null) },
        "Add instance",
      ),
    ),
  );
}

export default {
  async mount(root) {
    const els = {
      list: h("div", { class: "grid", id: "provider-list" }),
      summary: h("p", { class: "page-sub", id: "provider-summary" }, "Checking…"),
      form: h("div", { class: "panel hidden", id: "add-form" }),
    };
    const connection = h("div", { class: "section" });
    const autoToggle = h("input", {
      type: "checkbox",
      id: "auto-refresh",
      checked: localStorage.getItem(AUTO_KEY) !== "off",
    });
    const page = providersPage(els);
    render(root, pageHead(page, els, autoToggle), els.form, els.list, connection);
    const offs = [
      events.on("provider.status", (ev) => page.update(ev.data)),
      events.on("provider.removed", () => page.load()),
      events.on("model.schedule", (ev) => page.scheduled(ev.data)),
      events.onSnapshot(() => page.load(), false),
    ];
    await Promise.all([loadKinds().catch(toastError), page.load()]);
    const stopPolling = autoRefresh(page, autoToggle);
    drawConnection(connection);
    return () => {
      stopPolling();
      clearTimeout(page.state.reload);
      for (const off of offs) off();
      for (const k of [...page.state.boxes.keys()]) closePanel(page.state, k);
    };
  },
};
