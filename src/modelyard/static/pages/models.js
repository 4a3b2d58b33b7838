// Models: one catalog of every instance's models — search, filters, sort, pages, table or
// cards, multi-select with batch actions, start/stop/delete/recreate, details drawer, and live
// state from model.state / catalog.changed events.
import { del, get, post } from "../js/api.js";
import { confirmDialog, h, render } from "../js/dom.js";
import { events } from "../js/events.js";
import { ago, bytes } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";
import { actionButtons, openDrawer, recommendedSection } from "./models-extra.js";

const VIEW_KEY = "modelyard.models.view";
const STATUSES = ["loaded", "starting", "available", "downloading", "failed"];
const PROVIDERS = {
  ollama: "Ollama",
  llamacpp: "llama.cpp",
  lmstudio: "LM Studio",
  openai_compat: "OpenAI-compatible",
  openai: "OpenAI",
  anthropic: "Anthropic",
};
const SOURCES = {
  ollama: "Ollama registry",
  local: "Local file",
  hf: "Hugging Face",
  url: "URL",
  lmstudio: "LM Studio",
  openai: "OpenAI",
  anthropic: "Anthropic",
  openai_compat: "OpenAI-compatible",
};
const GB = 1e9;
const SIZES = {
  "": ["Any size", null, null],
  small: ["Under 1 GB", null, GB - 1],
  medium: ["1–5 GB", GB, 5 * GB],
  large: ["5–20 GB", 5 * GB, 20 * GB],
  huge: ["Over 20 GB", 20 * GB, null],
};
const SORTS = { name: "Name", size: "Size", modified: "Modified", status: "Status" };

export const modelKey = (m) => JSON.stringify([m.provider, m.instance_id, m.name]);
export const ref = (m) => ({ provider: m.provider, name: m.name, instance_id: m.instance_id });

function options(map, selected) {
  return Object.entries(map).map(([value, label]) =>
    h("option", { value, selected: value === selected }, Array.isArray(label) ? label[0] : label),
  );
}

export default {
  async mount(root) {
    const state = {
      q: "",
      status: "",
      provider: "",
      source: "",
      size: "",
      sort: "name",
      order: "asc",
      page: 1,
      pageSize: 50,
      total: 0,
      models: [],
      selected: new Map(),
      busy: new Set(),
      view: localStorage.getItem(VIEW_KEY) || (window.innerWidth < 720 ? "cards" : "table"),
      seq: 0,
      reloadTimer: null,
      managed: new Set(), // "provider/id" of the instances modelyard runs (see modelRules)
    };

    const summary = h("p", { class: "page-sub", id: "models-summary" }, "Loading…");
    const search = h("input", {
      type: "search",
      id: "model-search",
      placeholder: "Search models…",
      "aria-label": "Search models",
      autocomplete: "off",
    });
    const selects = {
      status: h(
        "select",
        { id: "filter-status", "aria-label": "Status" },
        h("option", { value: "" }, "Any status"),
        STATUSES.map((s) => h("option", { value: s }, s)),
      ),
      provider: h(
        "select",
        { id: "filter-provider", "aria-label": "Provider" },
        h("option", { value: "" }, "All providers"),
        options(PROVIDERS),
      ),
      source: h(
        "select",
        { id: "filter-source", "aria-label": "Source" },
        h("option", { value: "" }, "Any source"),
        options(SOURCES),
      ),
      size: h("select", { id: "filter-size", "aria-label": "Size" }, options(SIZES, "")),
      sort: h("select", { id: "sort-field", "aria-label": "Sort by" }, options(SORTS, "name")),
    };
    const orderBtn = h("button", {
      class: "btn",
      id: "sort-order",
      type: "button",
      title: "Sort direction",
    });
    const viewBtns = ["table", "cards"].map((v) =>
      h(
        "button",
        {
          class: "btn btn-small",
          type: "button",
          "data-view": v,
          onclick: () => setView(v),
        },
        v === "table" ? "Table" : "Cards",
      ),
    );
    const syncBtn = h("button", { class: "btn", id: "sync-models", type: "button" }, "Sync");
    const batchBar = h("div", {
      class: "panel batch-bar hidden",
      id: "batch-bar",
      role: "region",
      "aria-label": "Selected models",
    });
    const list = h("div", { id: "model-list" });
    const pager = h("div", { class: "pager", id: "model-pager" });
    const recommended = h("div", { class: "section", id: "recommended" });

    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Models"), summary),
        h(
          "div",
          { class: "toolbar" },
          h("div", { class: "segmented", role: "group", "aria-label": "View" }, viewBtns),
          syncBtn,
        ),
      ),
      h(
        "div",
        { class: "panel filters" },
        search,
        selects.status,
        selects.provider,
        selects.source,
        selects.size,
        h("div", { class: "row sort-box" }, selects.sort, orderBtn),
      ),
      batchBar,
      list,
      pager,
      recommended,
    );

    async function load() {
      const seq = ++state.seq;
      const [, min, max] = SIZES[state.size] || SIZES[""];
      const params = new URLSearchParams({
        sort: state.sort,
        order: state.order,
        page: state.page,
        page_size: state.pageSize,
      });
      for (const name of ["q", "status", "provider", "source"])
        if (state[name]) params.set(name, state[name]);
      if (min !== null) params.set("min_size", min);
      if (max !== null) params.set("max_size", max);
      try {
        const [data, providers] = await Promise.all([
          get(`/api/models/search?${params}`),
          get("/api/providers").catch(() => null),
        ]);
        if (seq !== state.seq) return;
        if (providers) {
          state.managed = new Set(
            providers.instances.filter((i) => i.managed).map((i) => `${i.provider}/${i.id}`),
          );
        }
        state.models = data.models;
        state.total = data.total;
        if (!data.models.length && state.page > 1 && data.total) {
          state.page = Math.ceil(data.total / state.pageSize);
          load();
          return;
        }
        draw();
      } catch (err) {
        toastError(err);
      }
    }

    function reloadSoon() {
      clearTimeout(state.reloadTimer);
      state.reloadTimer = setTimeout(load, 250);
    }

    function draw() {
      const filtered = state.q || state.status || state.provider || state.source || state.size;
      summary.textContent = `${state.total} ${state.total === 1 ? "model" : "models"}${filtered ? " match" : ""}`;
      orderBtn.textContent = state.order === "asc" ? "↑ Asc" : "↓ Desc";
      orderBtn.setAttribute("aria-label", state.order === "asc" ? "Ascending" : "Descending");
      for (const b of viewBtns)
        b.setAttribute("aria-pressed", String(b.dataset.view === state.view));
      if (!state.models.length) {
        render(
          list,
          h(
            "div",
            { class: "empty panel" },
            h("h2", {}, filtered ? "No models match" : "No models yet"),
            h(
              "p",
              {},
              filtered
                ? "Change the search or the filters."
                : "Download one from Get models, or put GGUF files in the models directory and press Sync.",
            ),
          ),
        );
      } else {
        render(
          list,
          state.view === "table"
            ? table()
            : h("div", { class: "grid model-cards" }, state.models.map(card)),
        );
      }
      drawPager();
      drawBatch();
    }

    function statusBadge(m) {
      return h(
        "span",
        { class: "badge", dataset: { state: m.status }, "data-testid": "status" },
        m.status,
      );
    }

    function selectBox(m) {
      const k = modelKey(m);
      return h("input", {
        type: "checkbox",
        "data-testid": "select",
        "aria-label": `Select ${m.name}`,
        checked: state.selected.has(k),
        onchange: (ev) => {
          if (ev.target.checked) state.selected.set(k, m);
          else state.selected.delete(k);
          drawBatch();
        },
      });
    }

    function actions(m) {
      return h(
        "div",
        { class: "row model-actions" },
        actionButtons(m, state.managed, {
          busy: state.busy.has(modelKey(m)),
          onAction: (action) => act(m, action),
        }),
      );
    }

    function nameLink(m) {
      return h(
        "button",
        {
          class: "btn-link model-name",
          type: "button",
          onclick: () => openDrawer(m, { act, managed: state.managed }),
        },
        m.name,
      );
    }

    function sortHeader(field, label, cls = "") {
      const active = state.sort === field;
      return h(
        "th",
        {
          class: cls,
          "aria-sort": active ? (state.order === "asc" ? "ascending" : "descending") : null,
        },
        h(
          "button",
          { class: "sort", type: "button", onclick: () => setSort(field) },
          label,
          active ? (state.order === "asc" ? " ↑" : " ↓") : "",
        ),
      );
    }

    function table() {
      const all =
        state.models.length > 0 && state.models.every((m) => state.selected.has(modelKey(m)));
      const selectAll = h("input", {
        type: "checkbox",
        id: "select-all",
        "aria-label": "Select all on this page",
        checked: all,
        onchange: (ev) => {
          for (const m of state.models) {
            if (ev.target.checked) state.selected.set(modelKey(m), m);
            else state.selected.delete(modelKey(m));
          }
          draw();
        },
      });
      return h(
        "div",
        { class: "panel table-wrap model-table" },
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { class: "col-check" }, selectAll),
              sortHeader("name", "Name"),
              h("th", {}, "Provider"),
              sortHeader("status", "Status"),
              sortHeader("size", "Size", "num"),
              h("th", { class: "col-wide" }, "Params"),
              h("th", { class: "col-wide" }, "Quant"),
              h("th", { class: "col-wide" }, "Mode"),
              sortHeader("modified", "Modified", "col-wide"),
              h("th", {}, "Actions"),
            ),
          ),
          h(
            "tbody",
            {},
            state.models.map((m) =>
              h(
                "tr",
                { dataset: { key: modelKey(m), name: m.name, status: m.status } },
                h("td", { class: "col-check" }, selectBox(m)),
                h(
                  "td",
                  { class: "model-cell" },
                  nameLink(m),
                  m.meta?.error ? h("div", { class: "field-error small" }, m.meta.error) : null,
                ),
                h(
                  "td",
                  {},
                  PROVIDERS[m.provider] || m.provider,
                  h("div", { class: "muted small" }, m.instance_id),
                ),
                h("td", {}, statusBadge(m)),
                h("td", { class: "num" }, bytes(m.size)),
                h("td", { class: "col-wide" }, m.parameter_size || "—"),
                h("td", { class: "col-wide mono" }, m.quantization || "—"),
                h("td", { class: "col-wide" }, m.mode),
                h("td", { class: "col-wide" }, m.modified_at ? ago(m.modified_at) : "—"),
                h("td", {}, actions(m)),
              ),
            ),
          ),
        ),
      );
    }

    function card(m) {
      return h(
        "article",
        {
          class: "panel card model-card",
          dataset: { key: modelKey(m), name: m.name, status: m.status },
        },
        h(
          "div",
          { class: "card-head" },
          selectBox(m),
          h(
            "div",
            { style: { flex: "1", minWidth: "0" } },
            h("div", { class: "card-title" }, nameLink(m)),
            h(
              "div",
              { class: "card-sub" },
              `${PROVIDERS[m.provider] || m.provider} · ${m.instance_id}`,
            ),
          ),
          statusBadge(m),
        ),
        h(
          "dl",
          { class: "kv" },
          h("dt", {}, "Size"),
          h("dd", {}, bytes(m.size)),
          h("dt", {}, "Params"),
          h("dd", {}, [m.parameter_size, m.quantization].filter(Boolean).join(" · ") || "—"),
          h("dt", {}, "Mode"),
          h("dd", {}, m.mode),
          m.loaded?.memory ? [h("dt", {}, "Memory"), h("dd", {}, bytes(m.loaded.memory))] : null,
        ),
        actions(m),
      );
    }

    function drawPager() {
      const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
      const first = state.total ? (state.page - 1) * state.pageSize + 1 : 0;
      const last = Math.min(state.total, state.page * state.pageSize);
      const size = h(
        "select",
        {
          "aria-label": "Models per page",
          id: "page-size",
          onchange: (ev) => {
            state.pageSize = Number(ev.target.value);
            state.page = 1;
            load();
          },
        },
        [25, 50, 100, 200].map((n) =>
          h("option", { value: n, selected: n === state.pageSize }, `${n} per page`),
        ),
      );
      render(
        pager,
        state.total > 0
          ? [
              h("span", { class: "muted", id: "page-info" }, `${first}–${last} of ${state.total}`),
              h("span", { class: "spacer" }),
              size,
              h(
                "button",
                {
                  class: "btn btn-small",
                  type: "button",
                  id: "page-prev",
                  disabled: state.page <= 1,
                  onclick: () => {
                    state.page -= 1;
                    load();
                  },
                },
                "‹ Prev",
              ),
              h("span", { class: "small" }, `Page ${state.page} of ${pages}`),
              h(
                "button",
                {
                  class: "btn btn-small",
                  type: "button",
                  id: "page-next",
                  disabled: state.page >= pages,
                  onclick: () => {
                    state.page += 1;
                    load();
                  },
                },
                "Next ›",
              ),
            ]
          : [],
      );
    }

    function drawBatch() {
      const n = state.selected.size;
      batchBar.classList.toggle("hidden", n === 0);
      if (!n) return;
      render(
        batchBar,
        h("strong", {}, `${n} selected`),
        h("span", { class: "muted small", id: "batch-progress" }),
        h("span", { class: "spacer" }),
        ["start", "stop", "delete"].map((action) =>
          h(
            "button",
            {
              class: `btn btn-small${action === "delete" ? " btn-danger" : ""}`,
              type: "button",
              "data-batch": action,
              onclick: () => runBatch(action),
            },
            action[0].toUpperCase() + action.slice(1),
          ),
        ),
        h(
          "button",
          {
            class: "btn btn-small",
            type: "button",
            onclick: () => {
              state.selected.clear();
              draw();
            },
          },
          "Clear",
        ),
      );
    }

    async function runBatch(action) {
      const items = [...state.selected.values()];
      if (action === "delete") {
        const ok = await confirmDialog({
          title: `Delete ${items.length} ${items.length === 1 ? "model" : "models"}?`,
          body: `${items
            .slice(0, 5)
            .map((m) => m.name)
            .join(
              ", ",
            )}${items.length > 5 ? ", …" : ""} will be removed from disk. Running GGUF models must be stopped first.`,
          confirm: "Delete",
          danger: true,
        });
        if (!ok) return;
      }
      for (const m of items) state.busy.add(modelKey(m));
      draw();
      try {
        const res = await post("/api/models/batch", { action, models: items.map(ref) });
        const failed = res.results.filter((r) => !r.ok);
        toast(`${action}: ${res.ok} done${failed.length ? `, ${failed.length} failed` : ""}`, {
          kind: failed.length ? "error" : "success",
          hint: failed.map((r) => `${r.name}: ${r.error}`).join("; "),
        });
        state.selected.clear();
      } catch (err) {
        toastError(err);
      } finally {
        for (const m of items) state.busy.delete(modelKey(m));
        await load();
      }
    }

    async function act(m, action, force = false) {
      const destructive = {
        delete: "removed from disk",
        recreate: "deleted and downloaded again from where it came from",
      };
      if (destructive[action] && !force) {
        const ok = await confirmDialog({
          title: `${action === "delete" ? "Delete" : "Recreate"} ${m.name}?`,
          body: `${m.name} will be ${destructive[action]}.`,
          confirm: action === "delete" ? "Delete" : "Recreate",
          danger: true,
        });
        if (!ok) return;
      }
      const k = modelKey(m);
      state.busy.add(k);
      draw();
      try {
        if (action === "delete") {
          const q = m.instance_id ? `?instance_id=${encodeURIComponent(m.instance_id)}` : "";
          await del(
            `/api/models/${encodeURIComponent(m.provider)}/${m.name.split("/").map(encodeURIComponent).join("/")}${q}`,
          );
          toast(`Deleted ${m.name}`, { kind: "success" });
        } else {
          const body = action === "start" ? { ...ref(m), force } : ref(m);
          const res = await post(`/api/models/${action}`, body);
          toast(`${m.name}: ${res.status}`, { kind: "success" });
        }
      } catch (err) {
        if (err.code === "insufficient_memory" && !force) {
          state.busy.delete(k);
          const again = await confirmDialog({
            title: "It may not fit in memory",
            body: `${err.detail}. ${err.hint}`,
            confirm: "Start anyway",
            danger: true,
          });
          if (again) return act(m, action, true);
        } else {
          toastError(err);
        }
      } finally {
        state.busy.delete(k);
        await load();
      }
    }

    function setSort(field) {
      if (state.sort === field) state.order = state.order === "asc" ? "desc" : "asc";
      else {
        state.sort = field;
        state.order = field === "name" ? "asc" : "desc";
      }
      selects.sort.value = state.sort;
      state.page = 1;
      load();
    }

    function setView(view) {
      state.view = view;
      localStorage.setItem(VIEW_KEY, view);
      draw();
    }

    let searchTimer = null;
    search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        state.q = search.value.trim();
        state.page = 1;
        load();
      }, 200);
    });
    for (const name of ["status", "provider", "source", "size"]) {
      selects[name].addEventListener("change", () => {
        state[name] = selects[name].value;
        state.page = 1;
        load();
      });
    }
    selects.sort.addEventListener("change", () => {
      state.sort = selects.sort.value;
      state.page = 1;
      load();
    });
    orderBtn.addEventListener("click", () => {
      state.order = state.order === "asc" ? "desc" : "asc";
      state.page = 1;
      load();
    });
    syncBtn.addEventListener("click", async () => {
      syncBtn.disabled = true;
      try {
        const r = await post("/api/models/sync");
        const errors = r.errors?.length ? ` · ${r.errors.length} unreachable` : "";
        toast(`Synced: ${r.added} added, ${r.updated} updated, ${r.removed} removed${errors}`, {
          kind: r.errors?.length ? "error" : "success",
          hint: (r.errors || []).map((e) => `${e.provider}/${e.instance_id}: ${e.code}`).join("; "),
        });
        await load();
      } catch (err) {
        toastError(err);
      } finally {
        syncBtn.disabled = false;
      }
    });

    const offState = events.on("model.state", (ev) => {
      const d = ev.data;
      const m = state.models.find(
        (x) => x.provider === d.provider && x.instance_id === d.instance_id && x.name === d.name,
      );
      if (!m || d.status === "removed" || (state.status && d.status !== state.status)) {
        reloadSoon();
        return;
      }
      m.status = d.status;
      m.loaded = d.details;
      draw();
    });
    const offChanged = events.on("catalog.changed", reloadSoon);
    const offBatch = events.on("batch.progress", (ev) => {
      const el = document.getElementById("batch-progress");
      if (el) el.textContent = `${ev.data.action}: ${ev.data.done}/${ev.data.total}`;
    });
    const offSnap = events.onSnapshot(reloadSoon, false);

    await load();
    recommendedSection(recommended);
    return () => {
      clearTimeout(state.reloadTimer);
      clearTimeout(searchTimer);
      offState();
      offChanged();
      offBatch();
      offSnap();
      document.querySelector(".drawer")?.remove();
    };
  },
};
