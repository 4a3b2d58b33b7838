// Downloads: every task the server has, live. The list comes from GET /api/downloads (so a
// reload shows the same tasks) and download.* events keep each card current.
import { del, get, post } from "../js/api.js";
import { confirmDialog, h, render } from "../js/dom.js";
import { events } from "../js/events.js";
import { bytes, duration, rate } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";

const FILTER_KEY = "modelyard.downloads.filter";
const ACTIVE = new Set(["queued", "downloading", "verifying", "paused"]);
const RUNNING = new Set(["downloading", "verifying"]);
const SOURCES = { ollama: "Ollama", url: "URL", hf: "Hugging Face" };
const LOG_REFRESH_MS = 1000;

const nameOf = (t) => t.model_name || t.filename || t.url || t.id;

function where(t) {
  if (t.source === "ollama") return `into ollama/${t.instance_id}`;
  return t.url;
}

function numbers(t) {
  const parts = [];
  parts.push(t.total ? `${bytes(t.downloaded)} of ${bytes(t.total)}` : bytes(t.downloaded));
  parts.push(`${t.progress.toFixed(1)}%`);
  if (t.state === "downloading") {
    parts.push(rate(t.speed_bps));
    if (t.eta_s !== null && t.eta_s !== undefined) parts.push(`${duration(t.eta_s)} left`);
  }
  if (t.total_layers) parts.push(`layer ${t.current_layer} of ${t.total_layers}`);
  if (t.attempts > 1) parts.push(`attempt ${t.attempts}`);
  return parts.join(" · ");
}

function statusLine(t) {
  return t.source === "ollama" && ACTIVE.has(t.state) && t.current_status ? t.current_status : "";
}

export default {
  async mount(root) {
    const state = {
      tasks: new Map(), // id -> task
      logs: new Map(), // id -> {lines, fetchedAt} for open logs
      busy: new Set(),
      filter: localStorage.getItem(FILTER_KEY) || "all",
    };
    const list = h("div", { class: "download-list", id: "download-list" });
    const summary = h("p", { class: "page-sub", id: "download-summary" }, "Loading…");
    const filters = h("div", { class: "segmented", role: "group", "aria-label": "Show" });
    const clearBtn = h("button", { class: "btn", id: "clear-finished" }, "Clear finished");

    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Downloads"), summary),
        h(
          "div",
          { class: "toolbar" },
          filters,
          clearBtn,
          h("a", { class: "btn btn-primary", href: "#/get" }, "Get models"),
        ),
      ),
      list,
    );

    function drawFilters() {
      render(
        filters,
        [
          ["active", "Active"],
          ["all", "All"],
        ].map(([value, label]) =>
          h(
            "button",
            {
              class: "btn btn-small",
              type: "button",
              "aria-pressed": String(state.filter === value),
              onclick: () => {
                state.filter = value;
                localStorage.setItem(FILTER_KEY, value);
                drawFilters();
                draw();
              },
            },
            label,
          ),
        ),
      );
    }

    async function load() {
      try {
        const { downloads } = await get("/api/downloads");
        state.tasks = new Map(downloads.map((t) => [t.id, t]));
        draw();
      } catch (err) {
        toastError(err);
      }
    }

    function visible() {
      const tasks = [...state.tasks.values()].sort((a, b) =>
        b.created_at.localeCompare(a.created_at),
      );
      return state.filter === "active" ? tasks.filter((t) => ACTIVE.has(t.state)) : tasks;
    }

    function drawSummary() {
      const tasks = [...state.tasks.values()];
      const count = (s) => tasks.filter((t) => s.has(t.state)).length;
      const running = count(RUNNING);
      const queued = count(new Set(["queued"]));
      const paused = count(new Set(["paused"]));
      const speed = tasks
        .filter((t) => t.state === "downloading")
        .reduce((n, t) => n + (t.speed_bps || 0), 0);
      summary.textContent = tasks.length
        ? `${running} running · ${queued} queued · ${paused} paused · ${tasks.length - running - queued - paused} finished${speed ? ` · ${rate(speed)}` : ""}`
        : "Nothing downloaded yet.";
    }

    function draw() {
      drawSummary();
      const shown = visible();
      render(
        list,
        shown.length
          ? shown.map(card)
          : h(
              "div",
              { class: "empty" },
              h("h2", {}, state.tasks.size ? "No active downloads" : "No downloads yet"),
              h("p", {}, "Start one on ", h("a", { href: "#/get" }, "Get models"), "."),
            ),
      );
    }

    function card(t) {
      const busy = state.busy.has(t.id);
      const button = (action, label, extra = {}) =>
        h(
          "button",
          {
            class: `btn btn-small${action === "delete" ? " btn-danger" : ""}`,
            "data-action": action,
            disabled: busy,
            onclick: () => act(t, action),
            ...extra,
          },
          label,
        );
      const actions = [];
      if (t.state === "queued" || RUNNING.has(t.state)) actions.push(button("pause", "Pause"));
      if (t.state === "paused") actions.push(button("resume", "Resume"));
      if (ACTIVE.has(t.state)) actions.push(button("cancel", "Cancel"));
      if (t.state === "failed" || t.state === "cancelled") actions.push(button("retry", "Retry"));
      actions.push(
        button("log", state.logs.has(t.id) ? "Hide log" : "Log", {
          "aria-expanded": String(state.logs.has(t.id)),
        }),
      );
      actions.push(button("delete", "Delete"));
      const log = state.logs.get(t.id);
      return h(
        "article",
        { class: "panel card download-card", dataset: { id: t.id, state: t.state } },
        h(
          "div",
          { class: "card-head" },
          h(
            "div",
            { style: { flex: "1", minWidth: "0" } },
            h("div", { class: "card-title" }, nameOf(t)),
            h(
              "div",
              { class: "card-sub" },
              [SOURCES[t.source] || t.source, t.mode !== "llm" ? t.mode : null, where(t)]
                .filter(Boolean)
                .join(" · "),
            ),
          ),
          h(
            "span",
            { class: "badge", dataset: { state: t.state }, "data-testid": "state" },
            t.state,
          ),
        ),
        h(
          "div",
          {
            class: "progress",
            dataset: { state: t.state },
            role: "progressbar",
            "aria-valuemin": "0",
            "aria-valuemax": "100",
            "aria-valuenow": String(t.progress),
          },
          h("span", { style: { width: `${t.progress}%` } }),
        ),
        h("div", { class: "download-numbers", "data-testid": "numbers" }, numbers(t)),
        h("div", { class: "muted small", "data-testid": "status" }, statusLine(t)),
        t.path && t.state === "completed" ? h("div", { class: "muted small mono" }, t.path) : null,
        t.error
          ? h(
              "div",
              { class: "reason", dataset: { state: "ERROR" }, "data-testid": "error" },
              t.error_code ? h("code", {}, t.error_code) : null,
              t.error_code ? " — " : "",
              t.error,
            )
          : null,
        h("div", { class: "card-actions" }, actions),
        log
          ? h(
              "pre",
              { class: "log", "data-testid": "log" },
              log.lines.length ? log.lines.join("\n") : "(empty log)",
            )
          : null,
      );
    }

    function replace(t) {
      const old = list.querySelector(`[data-id="${CSS.escape(t.id)}"]`);
      const show = state.filter === "all" || ACTIVE.has(t.state);
      if (old && show) old.replaceWith(card(t));
      else draw();
    }

    // Progress within one state changes numbers only: update them in place, so the buttons
    // under the pointer are not swapped out four times a second.
    function patch(t) {
      const el = list.querySelector(`[data-id="${CSS.escape(t.id)}"]`);
      if (!el || el.dataset.state !== t.state || state.busy.has(t.id)) {
        replace(t);
        return;
      }
      const bar = el.querySelector(".progress");
      bar.setAttribute("aria-valuenow", String(t.progress));
      bar.firstElementChild.style.width = `${t.progress}%`;
      el.querySelector('[data-testid="numbers"]').textContent = numbers(t);
      el.querySelector('[data-testid="status"]').textContent = statusLine(t);
    }

    async function act(t, action) {
      if (action === "log") {
        await toggleLog(t);
        return;
      }
      if (action === "delete") {
        const running = ACTIVE.has(t.state);
        const ok = await confirmDialog({
          title: `Delete the download of ${nameOf(t)}?`,
          body: running
            ? "It is stopped and its partial file removed."
            : "The task and its log are forgotten. A downloaded model stays; delete models on the Models page.",
          confirm: "Delete",
          danger: true,
        });
        if (!ok) return;
      }
      if (action === "cancel") {
        const ok = await confirmDialog({
          title: `Cancel ${nameOf(t)}?`,
          body: "The partial file is removed; a retry starts from the beginning.",
          confirm: "Cancel download",
          danger: true,
        });
        if (!ok) return;
      }
      state.busy.add(t.id);
      replace(t);
      try {
        if (action === "delete") {
          await del(`/api/downloads/${encodeURIComponent(t.id)}`);
          state.tasks.delete(t.id);
          state.logs.delete(t.id);
          toast(`Deleted the download of ${nameOf(t)}`);
        } else {
          const fresh = await post(`/api/downloads/${encodeURIComponent(t.id)}/${action}`);
          state.tasks.set(fresh.id, fresh);
        }
      } catch (err) {
        toastError(err);
      } finally {
        state.busy.delete(t.id);
        if (state.tasks.has(t.id)) replace(state.tasks.get(t.id));
        else draw();
      }
    }

    async function toggleLog(t) {
      if (state.logs.has(t.id)) {
        state.logs.delete(t.id);
        replace(t);
        return;
      }
      state.logs.set(t.id, { lines: [], fetchedAt: 0 });
      await refreshLog(t.id);
    }

    async function refreshLog(id) {
      const entry = state.logs.get(id);
      if (!entry) return;
      entry.fetchedAt = Date.now();
      try {
        entry.lines = (await get(`/api/downloads/${encodeURIComponent(id)}/log?lines=200`)).lines;
      } catch (err) {
        entry.lines = [`(the log cannot be read: ${err.detail})`];
      }
      if (state.tasks.has(id) && state.logs.has(id)) replace(state.tasks.get(id));
    }

    function onTask(ev) {
      const t = ev.data;
      const isNew = !state.tasks.has(t.id);
      state.tasks.set(t.id, t);
      if (isNew) {
        draw();
        return;
      }
      drawSummary();
      if (ev.type === "download.progress") patch(t);
      else replace(t);
      const log = state.logs.get(t.id);
      if (log && (ev.type === "download.state" || Date.now() - log.fetchedAt > LOG_REFRESH_MS))
        refreshLog(t.id);
    }

    clearBtn.addEventListener("click", async () => {
      const finished = [...state.tasks.values()].filter((t) => !ACTIVE.has(t.state));
      if (!finished.length) {
        toast("Nothing to clear");
        return;
      }
      const ok = await confirmDialog({
        title: `Clear ${finished.length} finished download${finished.length > 1 ? "s" : ""}?`,
        body: "Their tasks and logs are forgotten; downloaded models stay.",
        confirm: "Clear",
      });
      if (!ok) return;
      for (const t of finished) {
        try {
          await del(`/api/downloads/${encodeURIComponent(t.id)}`);
          state.tasks.delete(t.id);
        } catch (err) {
          toastError(err);
        }
      }
      draw();
    });

    const offState = events.on("download.state", onTask);
    const offProgress = events.on("download.progress", onTask);
    const offRemoved = events.on("download.removed", (ev) => {
      state.tasks.delete(ev.data.id);
      state.logs.delete(ev.data.id);
      draw();
    });
    // Every (re)connect: the events missed meanwhile are gone, so read the list again.
    const offSnap = events.onSnapshot(() => load(), false);

    drawFilters();
    await load();
    return () => {
      offState();
      offProgress();
      offRemoved();
      offSnap();
    };
  },
};
