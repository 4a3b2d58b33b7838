// Providers: the truth about every instance, with start/stop/restart, history and logs.
import { del, get, patch, post } from "../js/api.js";
import { confirmDialog, h, render } from "../js/dom.js";
import { events } from "../js/events.js";
import { ago, ms } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";

const POLL_MS = 5000;
const PROVIDERS = ["ollama", "llamacpp", "lmstudio", "openai_compat", "openai", "anthropic"];
const LABELS = {
  ollama: "Ollama",
  llamacpp: "llama.cpp",
  lmstudio: "LM Studio",
  openai_compat: "OpenAI-compatible",
  openai: "OpenAI",
  anthropic: "Anthropic",
};
const AUTO_KEY = "modelyard.providers.autoRefresh";

function key(s) {
  return `${s.provider}/${s.id ?? s.instance_id}`;
}

function mark(value) {
  if (value === null || value === undefined) return h("span", { class: "check-na" }, "–");
  return value ? h("span", { class: "check-ok" }, "✓") : h("span", { class: "check-bad" }, "✗");
}

export default {
  async mount(root) {
    const state = {
      instances: new Map(), // key -> instance
      statuses: new Map(), // key -> status
      open: new Map(), // key -> "history" | "logs" | null
      boxes: new Map(), // key -> {what, el, seq}: an open panel, kept across redraws
      busy: new Set(),
      timer: null,
      ageMs: 0,
    };
    let auto = localStorage.getItem(AUTO_KEY) !== "off";

    const list = h("div", { class: "grid", id: "provider-list" });
    const summary = h("p", { class: "page-sub", id: "provider-summary" }, "Checking…");
    const autoToggle = h("input", { type: "checkbox", id: "auto-refresh", checked: auto });
    const refreshBtn = h("button", { class: "btn", id: "refresh-all" }, "Refresh all");
    const addBtn = h("button", { class: "btn btn-primary", id: "add-instance" }, "Add instance");
    const formBox = h("div", { class: "panel hidden", id: "add-form" });
    const connectBox = h("div", { class: "section" });

    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Providers"), summary),
        h(
          "div",
          { class: "toolbar" },
          h(
            "label",
            { class: "switch", title: `Re-check every ${POLL_MS / 1000} s` },
            autoToggle,
            "Auto-refresh",
          ),
          refreshBtn,
          addBtn,
        ),
      ),
      formBox,
      list,
      connectBox,
    );

    async function load(refresh = false) {
      try {
        const [inst, status] = await Promise.all([
          get("/api/providers"),
          get(`/api/providers/status${refresh ? "?refresh=true" : ""}`),
        ]);
        state.instances = new Map(inst.instances.map((i) => [key(i), i]));
        state.statuses = new Map(status.providers.map((s) => [key(s), s]));
        state.ageMs = status.age_ms;
        draw();
        for (const k of state.boxes.keys()) fillExtra(k); // open panels show fresh content
      } catch (err) {
        toastError(err);
      }
    }

    function schedule() {
      clearInterval(state.timer);
      state.timer = auto ? setInterval(() => load(false), POLL_MS) : null;
    }

    function draw() {
      const items = [...state.instances.values()];
      const running = items.filter((i) => state.statuses.get(key(i))?.state === "RUNNING").length;
      summary.textContent = `${running} of ${items.length} running · checked ${state.ageMs < 1000 ? "just now" : `${Math.round(state.ageMs / 1000)} s ago`}`;
      for (const k of state.boxes.keys()) if (!state.instances.has(k)) state.boxes.delete(k);
      render(
        list,
        items.length ? items.map(card) : h("div", { class: "empty" }, "No instances. Add one."),
      );
    }

    function card(inst) {
      const k = key(inst);
      const s = state.statuses.get(k);
      const st = s?.state ?? "UNKNOWN";
      const busy = state.busy.has(k);
      const actions = [];
      if (inst.managed) {
        const running = ["RUNNING", "STARTING", "DEGRADED"].includes(st) || s?.pid_exists;
        actions.push(
          h(
            "button",
            {
              class: "btn btn-small",
              disabled: busy || running,
              onclick: () => act(inst, "start"),
              "data-action": "start",
            },
            "Start",
          ),
          h(
            "button",
            {
              class: "btn btn-small",
              disabled: busy || !running,
              onclick: () => act(inst, "stop"),
              "data-action": "stop",
            },
            "Stop",
          ),
          h(
            "button",
            {
              class: "btn btn-small",
              disabled: busy,
              onclick: () => act(inst, "restart"),
              "data-action": "restart",
            },
            "Restart",
          ),
        );
      }
      actions.push(
        h(
          "button",
          {
            class: "btn btn-small",
            onclick: () => toggle(k, "history"),
            "aria-expanded": state.open.get(k) === "history",
          },
          "History",
        ),
      );
      if (inst.managed) {
        actions.push(
          h(
            "button",
            {
              class: "btn btn-small",
              onclick: () => toggle(k, "logs"),
              "aria-expanded": state.open.get(k) === "logs",
            },
            "Logs",
          ),
        );
      }
      if (inst.deletable) {
        actions.push(
          h(
            "button",
            { class: "btn btn-small", onclick: () => showForm(inst), "data-action": "edit" },
            "Edit",
          ),
          h("button", { class: "btn btn-small btn-danger", onclick: () => remove(inst) }, "Remove"),
        );
      }

      const extra = extraBox(k);
      return h(
        "article",
        { class: "panel card", dataset: { key: k, state: st } },
        h(
          "div",
          { class: "card-head" },
          h(
            "div",
            { style: { flex: "1" } },
            h(
              "div",
              { class: "card-title" },
              `${LABELS[inst.provider] || inst.provider} · ${inst.id}`,
            ),
            h(
              "div",
              { class: "card-sub" },
              inst.base_url,
              inst.managed ? " · managed" : " · external",
            ),
          ),
          h("span", { class: "badge", dataset: { state: st }, "data-testid": "state" }, st),
        ),
        h(
          "div",
          { class: "checks", "data-testid": "checks" },
          h(
            "span",
            {},
            "PID ",
            inst.managed ? mark(s?.pid_exists) : h("span", { class: "check-na" }, "–"),
          ),
          h("span", {}, "Port ", mark(s?.port_listening)),
          h("span", {}, "API ", mark(s?.api_responding)),
        ),
        h(
          "dl",
          { class: "kv" },
          h("dt", {}, "Version"),
          h("dd", {}, s?.version || "—"),
          h("dt", {}, "Latency"),
          h("dd", {}, ms(s?.latency_ms)),
          s?.models_loaded !== null && s?.models_loaded !== undefined
            ? [h("dt", {}, "Models loaded"), h("dd", {}, String(s.models_loaded))]
            : null,
          s?.pid ? [h("dt", {}, "PID"), h("dd", { class: "mono" }, String(s.pid))] : null,
          inst.model ? [h("dt", {}, "Model"), h("dd", { class: "mono" }, inst.model)] : null,
          h("dt", {}, "Checked"),
          h("dd", {}, s ? ago(s.checked_at) : "not yet"),
        ),
        s && st !== "RUNNING" && (s.reason_code || s.hint)
          ? h(
              "div",
              { class: "reason", dataset: { state: st }, "data-testid": "reason" },
              s.reason_code ? h("code", {}, s.reason_code) : null,
              s.reason_code && s.hint ? " — " : "",
              s.hint || "",
            )
          : null,
        h("div", { class: "card-actions" }, actions),
        extra,
      );
    }

    /** The open panel of card `k` (null when none): the same element on every redraw, so it
     * keeps its content (and scroll position) until fresh content replaces it. */
    function extraBox(k) {
      const what = state.instances.has(k) ? state.open.get(k) : null;
      if (!what) {
        state.boxes.delete(k);
        return null;
      }
      let box = state.boxes.get(k);
      if (box?.what !== what) {
        const el = h("div", { class: "card-extra", "data-extra": what }, "Loading…");
        box = { what, seq: 0, el };
        state.boxes.set(k, box);
      }
      return box.el;
    }

    async function act(inst, action) {
      const k = key(inst);
      state.busy.add(k);
      draw();
      try {
        const status = await post(
          `/api/providers/${inst.provider}/instances/${encodeURIComponent(inst.id)}/${action}`,
        );
        state.statuses.set(k, status);
        toast(`${inst.provider}/${inst.id}: ${action} → ${status.state}`, {
          kind: status.state === "ERROR" ? "error" : "success",
          hint: status.state === "ERROR" ? status.hint : "",
        });
      } catch (err) {
        toastError(err);
      } finally {
        state.busy.delete(k);
        await load(true);
      }
    }

    async function toggle(k, what) {
      state.open.set(k, state.open.get(k) === what ? null : what);
      draw();
      if (state.open.get(k)) await fillExtra(k);
    }

    /** Load (again) the content of card `k`'s open panel; an answer overtaken by a later
     * request, or for a panel closed or switched meanwhile, is dropped. */
    async function fillExtra(k) {
      const entry = state.boxes.get(k);
      const inst = state.instances.get(k);
      if (!entry || !inst) return;
      const { what, el: box } = entry;
      const seq = ++entry.seq;
      const current = () => state.boxes.get(k) === entry && entry.seq === seq;
      const base = `/api/providers/${inst.provider}/instances/${encodeURIComponent(inst.id)}`;
      try {
        if (what === "history") {
          const { checks } = await get(`${base}/history`);
          if (!current()) return;
          render(
            box,
            checks.length
              ? h(
                  "table",
                  { class: "history" },
                  h(
                    "thead",
                    {},
                    h(
                      "tr",
                      {},
                      h("th", {}, "When"),
                      h("th", {}, "State"),
                      h("th", {}, "Latency"),
                      h("th", {}, "Reason"),
                    ),
                  ),
                  h(
                    "tbody",
                    {},
                    checks.map((c) =>
                      h(
                        "tr",
                        {},
                        h("td", {}, new Date(c.checked_at).toLocaleTimeString()),
                        h(
                          "td",
                          {},
                          h("span", { class: "badge", dataset: { state: c.state } }, c.state),
                        ),
                        h("td", {}, ms(c.latency_ms)),
                        h("td", { class: "mono" }, c.reason_code || ""),
                      ),
                    ),
                  ),
                )
              : h("p", { class: "muted" }, "No checks yet."),
          );
        } else {
          const { lines, path } = await get(`${base}/logs?lines=200`);
          if (!current()) return;
          const text = lines.join("\n") || "(empty log)";
          const pre = box.querySelector("pre.log");
          if (pre) {
            // in place: a reader scrolled up in the log stays where they are
            box.querySelector(".log-path").textContent = path;
            if (pre.textContent !== text) pre.textContent = text;
          } else {
            render(
              box,
              h("div", { class: "small muted log-path" }, path),
              h("pre", { class: "log" }, text),
            );
          }
        }
      } catch (err) {
        if (current()) render(box, h("p", { class: "field-error" }, err.message));
      }
    }

    async function remove(inst) {
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
        await del(`/api/providers/${inst.provider}/instances/${encodeURIComponent(inst.id)}`);
        toast(`Removed ${inst.provider}/${inst.id}`, { kind: "success" });
        await load(false);
      } catch (err) {
        toastError(err);
      }
    }

    /** The add form, or with `inst` the edit form of an API-created instance. */
    function showForm(inst = null) {
      const editing = Boolean(inst);
      const provider = h(
        "select",
        { name: "provider", disabled: editing },
        PROVIDERS.map((p) => h("option", { value: p, selected: inst?.provider === p }, LABELS[p])),
      );
      const id = h("input", {
        name: "id",
        required: true,
        placeholder: "my-server",
        disabled: editing,
        value: inst?.id ?? "",
        pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}",
      });
      const baseUrl = h("input", {
        name: "base_url",
        required: true,
        placeholder: "http://127.0.0.1:8081",
        value: inst?.base_url ?? "",
      });
      const managed = h("input", {
        type: "checkbox",
        name: "managed",
        checked: Boolean(inst?.managed),
      });
      const model = h("input", {
        name: "model",
        placeholder: "/path/to/model.gguf",
        value: inst?.model ?? "",
      });
      const mode = h(
        "select",
        { name: "mode" },
        ["llm", "embed", "rerank"].map((m) =>
          h("option", { value: m, selected: inst?.mode === m }, m),
        ),
      );
      const apiKey = h("input", {
        name: "api_key",
        type: "password",
        autocomplete: "off",
        placeholder: inst?.has_api_key ? "unchanged (type to replace)" : "optional",
      });
      const error = h("div", { class: "field-error wide" });
      const form = h(
        "form",
        { class: "form" },
        h("label", {}, "Provider", provider),
        h("label", {}, "Id", id),
        h("label", {}, "Base URL", baseUrl),
        h("label", {}, "API key", apiKey),
        h("label", {}, "GGUF model (managed llama.cpp)", model),
        h("label", {}, "Mode", mode),
        h("label", { class: "switch" }, managed, "Managed (modelyard starts and stops it)"),
        error,
        h(
          "div",
          { class: "row wide" },
          h("button", { class: "btn btn-primary", type: "submit" }, editing ? "Save" : "Add"),
          h(
            "button",
            { class: "btn", type: "button", onclick: () => formBox.classList.add("hidden") },
            "Cancel",
          ),
        ),
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        error.textContent = "";
        const body = { base_url: baseUrl.value.trim(), managed: managed.checked, mode: mode.value };
        if (!editing) body.id = id.value.trim();
        if (model.value.trim()) body.model = model.value.trim();
        if (apiKey.value) body.api_key = apiKey.value;
        const path = `/api/providers/${provider.value}/instances`;
        try {
          if (editing) {
            await patch(`${path}/${encodeURIComponent(inst.id)}`, body);
            toast(`Saved ${provider.value}/${inst.id}`, { kind: "success" });
          } else {
            await post(path, body);
            toast(`Added ${provider.value}/${body.id}`, { kind: "success" });
          }
          formBox.classList.add("hidden");
          await load(true);
        } catch (err) {
          error.textContent = `${err.detail}${err.hint ? ` — ${err.hint}` : ""}`;
        }
      });
      render(
        formBox,
        h("h2", {}, editing ? `Edit ${inst.provider}/${inst.id}` : "Add an instance"),
        form,
      );
      formBox.classList.remove("hidden");
      (editing ? baseUrl : id).focus();
      formBox.scrollIntoView({ block: "nearest" });
    }

    async function drawConnect() {
      try {
        const info = await get("/api/connection-info");
        render(
          connectBox,
          h(
            "details",
            { class: "panel" },
            h("summary", {}, h("strong", {}, "Connect to modelyard and your servers")),
            h(
              "dl",
              { class: "kv", style: { marginTop: "10px" } },
              h("dt", {}, "modelyard API"),
              h("dd", { class: "mono" }, info.modelyard),
              h("dt", {}, "Events"),
              h("dd", { class: "mono" }, info.events),
              info.open_webui
                ? [
                    h("dt", {}, "Open WebUI"),
                    h(
                      "dd",
                      {},
                      h(
                        "a",
                        { href: info.open_webui, target: "_blank", rel: "noopener" },
                        info.open_webui,
                      ),
                    ),
                  ]
                : null,
            ),
            Object.entries(info.snippets).map(([name, code]) =>
              h(
                "div",
                { class: "section" },
                h(
                  "div",
                  { class: "row" },
                  h("strong", {}, name),
                  h(
                    "button",
                    {
                      class: "btn btn-small",
                      onclick: () =>
                        navigator.clipboard?.writeText(code).then(() => toast("Copied")),
                    },
                    "Copy",
                  ),
                ),
                h("pre", { class: "log" }, code),
              ),
            ),
          ),
        );
      } catch (err) {
        /* connection info is optional */
      }
    }

    autoToggle.addEventListener("change", () => {
      auto = autoToggle.checked;
      localStorage.setItem(AUTO_KEY, auto ? "on" : "off");
      schedule();
      if (auto) load(false);
    });
    refreshBtn.addEventListener("click", () => load(true));
    addBtn.addEventListener("click", () => showForm());

    const offStatus = events.on("provider.status", (ev) => {
      const s = ev.data;
      state.statuses.set(key(s), s);
      if (!state.instances.has(key(s))) {
        load(false);
        return;
      }
      const old = list.querySelector(`[data-key="${CSS.escape(key(s))}"]`);
      if (old) {
        const fresh = card(state.instances.get(key(s)));
        old.replaceWith(fresh);
        if (state.open.get(key(s))) fillExtra(key(s));
      }
    });
    const offRemoved = events.on("provider.removed", () => load(false));
    const offSnap = events.onSnapshot(() => load(false), false);

    await load(false);
    schedule();
    drawConnect();
    return () => {
      clearInterval(state.timer);
      offStatus();
      offRemoved();
      offSnap();
    };
  },
};
