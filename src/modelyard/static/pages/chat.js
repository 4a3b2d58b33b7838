// Chat: conversations on the left, the chosen one on the right with its answers streaming
// in as Markdown. Enter sends, Shift+Enter adds a line, Escape stops an answer. Route:
// #/chat (a new chat) or #/chat/<conversation id>.
import { ApiError, apiKey, del, get, patch, post } from "../js/api.js";
import { confirmDialog, h, render } from "../js/dom.js";
import { events } from "../js/events.js";
import { ago } from "../js/format.js";
import { toast, toastError } from "../js/toast.js";
import { settingsForm } from "./chat-settings.js";
import {
  groupLabel,
  icon,
  messageView,
  modelKey,
  PROVIDER_LABELS,
  readEvents,
} from "./chat-view.js";

const LAST_MODEL = "modelyard.chat.model";
const REMOTE_STATUS = "Another window is writing this answer…";
const REMOTE_POLL_MS = 2000;
const USABLE = new Set(["available", "loaded", "starting"]);

export default {
  async mount(root, { args }) {
    const s = {
      models: [],
      conversations: [],
      current: null,
      views: [],
      generating: null,
      remote: false,
      draft: { system: "", options: {} },
      choice: localStorage.getItem(LAST_MODEL),
      filter: "",
    };

    // -- layout ----------------------------------------------------------------------------
    const list = h("ul", { class: "conv-list", id: "conv-list", "aria-label": "Conversations" });
    const search = h("input", {
      type: "search",
      class: "conv-search",
      placeholder: "Search chats",
      "aria-label": "Search chats",
    });
    const newBtn = h(
      "button",
      { class: "btn btn-primary", id: "chat-new", type: "button" },
      icon("plus"),
      "New chat",
    );
    const side = h(
      "aside",
      { class: "chat-side" },
      h("div", { class: "chat-side-head" }, newBtn),
      search,
      list,
    );
    const picker = h("select", { id: "chat-model", "aria-label": "Model" });
    const title = h("h1", { class: "chat-title", id: "chat-title" }, "New chat");
    const menuBtn = h(
      "button",
      { class: "btn btn-ghost chat-menu", type: "button", "aria-label": "Show conversations" },
      icon("menu", 18),
    );
    const settingsBtn = h(
      "button",
      {
        class: "btn btn-ghost",
        type: "button",
        id: "chat-settings-toggle",
        "aria-expanded": "false",
        "aria-label": "Settings",
      },
      icon("sliders"),
      h("span", { class: "chat-settings-label" }, "Settings"),
    );
    const settings = h("section", {
      class: "chat-settings hidden",
      id: "chat-settings",
      "aria-label": "System prompt and options",
    });
    const messages = h("div", {
      class: "chat-messages",
      id: "chat-messages",
      role: "log",
      "aria-live": "off",
    });
    const input = h("textarea", {
      id: "chat-input",
      rows: 1,
      placeholder: "Send a message…",
      "aria-label": "Message",
    });
    const sendBtn = h(
      "button",
      {
        class: "btn btn-primary chat-send",
        id: "chat-send",
        type: "submit",
        title: "Send (Enter)",
      },
      icon("send"),
      "Send",
    );
    const stopBtn = h(
      "button",
      { class: "btn chat-stop hidden", id: "chat-stop", type: "button", title: "Stop (Esc)" },
      icon("stop"),
      "Stop",
    );
    const composer = h(
      "form",
      { class: "chat-composer", id: "chat-composer" },
      h("div", { class: "chat-composer-box" }, input, sendBtn, stopBtn),
      h(
        "div",
        { class: "chat-hint" },
        "Enter to send · Shift+Enter for a new line · Esc stops an answer",
      ),
    );
    const main = h(
      "section",
      { class: "chat-main" },
      h(
        "header",
        { class: "chat-head" },
        menuBtn,
        h("div", { class: "chat-head-main" }, title, picker),
        settingsBtn,
      ),
      settings,
      messages,
      composer,
    );
    const layout = h(
      "div",
      { class: "chat", id: "chat" },
      side,
      main,
      h("div", { class: "chat-scrim", onclick: () => layout.removeAttribute("data-side") }),
    );
    render(root, layout);

    function fitHeight() {
      layout.style.setProperty(
        "--chat-top",
        `${Math.max(0, root.getBoundingClientRect().top + window.scrollY)}px`,
      );
    }
    fitHeight();
    window.addEventListener("resize", fitHeight);

    // -- models ----------------------------------------------------------------------------
    async function loadModels() {
      try {
        const { models } = await get("/api/models/list");
        s.models = models.filter(
          (m) => (m.mode || "llm") === "llm" && USABLE.has(m.status || "available"),
        );
      } catch (err) {
        s.models = [];
        if (!(err instanceof ApiError && err.status === 404)) toastError(err);
      }
      drawPicker();
    }

    function chosenModel() {
      const c = s.current;
      if (c) return { provider: c.provider, instance_id: c.instance_id, name: c.model };
      const remembered = s.models.find((m) => modelKey(m) === s.choice);
      return remembered || s.models.find((m) => m.status === "loaded") || s.models[0] || null;
    }

    function drawPicker() {
      const chosen = chosenModel();
      const groups = new Map();
      const instances = {};
      for (const m of s.models) {
        (instances[m.provider] ||= new Set()).add(m.instance_id);
      }
      const all = [...s.models];
      if (chosen && !all.some((m) => m.provider === chosen.provider && m.name === chosen.name))
        all.unshift(chosen);
      for (const m of all) {
        const label = groupLabel(m.provider, m.instance_id, instances[m.provider]?.size || 1);
        if (!groups.has(label)) groups.set(label, []);
        groups.get(label).push(m);
      }
      const selectedKey = chosen ? matchKey(chosen) : null;
      render(
        picker,
        all.length
          ? [...groups].map(([label, items]) =>
              h(
                "optgroup",
                { label },
                items.map((m) =>
                  h(
                    "option",
                    { value: modelKey(m), selected: matchKey(m) === selectedKey },
                    m.status === "loaded" ? `${m.name} · loaded` : m.name,
                  ),
                ),
              ),
            )
          : h("option", { value: "" }, "No models yet: get one on the Models page"),
      );
      picker.disabled = !all.length;
      input.placeholder = chosen ? `Message ${chosen.name}…` : "Pick a model first";
    }

    function matchKey(m) {
      // GGUF models run on their own server but are catalogued under "local".
      const found = s.models.find(
        (x) =>
          x.provider === m.provider &&
          x.name === m.name &&
          (x.instance_id === m.instance_id || m.provider === "llamacpp"),
      );
      return modelKey(found || m);
    }

    picker.addEventListener("change", async () => {
      const [provider, instanceId, name] = JSON.parse(picker.value);
      s.choice = picker.value;
      localStorage.setItem(LAST_MODEL, picker.value);
      input.placeholder = `Message ${name}…`;
      if (!s.current) {
        drawMessages();
        return;
      }
      try {
        const body = { provider, model: name };
        if (instanceId) body.instance_id = instanceId;
        const updated = await patch(`/api/conversations/${s.current.id}`, body);
        Object.assign(s.current, {
          provider: updated.provider,
          instance_id: updated.instance_id,
          model: updated.model,
        });
        toast(`Switched to ${name}`, { kind: "success", timeout: 2000 });
      } catch (err) {
        toastError(err);
        drawPicker();
      }
    });

    // -- conversations ---------------------------------------------------------------------
    async function loadList() {
      try {
        s.conversations = (await get("/api/conversations")).conversations;
      } catch (err) {
        toastError(err);
      }
      drawList();
    }

    function drawList() {
      const q = s.filter.trim().toLowerCase();
      const items = s.conversations.filter((c) => !q || c.title.toLowerCase().includes(q));
      render(
        list,
        items.length
          ? items.map(convItem)
          : h("li", { class: "conv-empty muted" }, q ? "No chat matches." : "No chats yet."),
      );
    }

    function convItem(c) {
      const active = s.current?.id === c.id;
      const name = h("span", { class: "conv-title" }, c.title);
      const item = h(
        "li",
        { class: "conv-item", dataset: { id: c.id }, "aria-current": active ? "true" : false },
        h(
          "a",
          {
            class: "conv-open",
            href: `#/chat/${encodeURIComponent(c.id)}`,
            onclick: () => layout.removeAttribute("data-side"),
          },
          name,
          h("span", { class: "conv-sub" }, `${c.model} · ${ago(c.updated_at)}`),
        ),
        h(
          "div",
          { class: "conv-actions" },
          h(
            "button",
            {
              class: "btn btn-small btn-ghost",
              type: "button",
              "aria-label": `Rename ${c.title}`,
              title: "Rename",
              "data-action": "rename",
              onclick: () => rename(c, item, name),
            },
            icon("pencil", 14),
          ),
          h(
            "button",
            {
              class: "btn btn-small btn-ghost btn-danger",
              type: "button",
              "aria-label": `Delete ${c.title}`,
              title: "Delete",
              "data-action": "delete",
              onclick: () => remove(c),
            },
            icon("trash", 14),
          ),
        ),
      );
      return item;
    }

    function rename(c, item, name) {
      const field = h("input", {
        class: "conv-rename",
        value: c.title,
        maxlength: 200,
        "aria-label": "New title",
      });
      let done = false;
      const finish = async (save) => {
        if (done) return;
        done = true;
        const value = field.value.trim();
        if (save && value && value !== c.title) {
          try {
            const updated = await patch(`/api/conversations/${c.id}`, { title: value });
            c.title = updated.title;
            if (s.current?.id === c.id) {
              s.current.title = updated.title;
              title.textContent = updated.title;
            }
          } catch (err) {
            toastError(err);
          }
        }
        drawList();
      };
      field.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") {
          ev.preventDefault();
          finish(true);
        }
        if (ev.key === "Escape") {
          ev.preventDefault();
          finish(false);
        }
      });
      field.addEventListener("blur", () => finish(true));
      item.querySelector(".conv-open").replaceWith(field);
      field.focus();
      field.select();
    }

    async function remove(c) {
      const ok = await confirmDialog({
        title: `Delete “${c.title}”?`,
        body: "The conversation and all its messages are deleted.",
        confirm: "Delete",
        danger: true,
      });
      if (!ok) return;
      try {
        await del(`/api/conversations/${c.id}`);
        s.conversations = s.conversations.filter((x) => x.id !== c.id);
        if (s.current?.id === c.id) location.hash = "#/chat";
        drawList();
        toast("Chat deleted", { kind: "success", timeout: 2000 });
      } catch (err) {
        toastError(err);
      }
    }

    async function open(id) {
      if (s.generating) stopNow();
      layout.removeAttribute("data-side");
      if (id && s.current?.id === id) return;
      try {
        s.current = id ? await get(`/api/conversations/${encodeURIComponent(id)}`) : null;
      } catch (err) {
        toastError(err);
        location.hash = "#/chat";
        return;
      }
      markRemote(); // its answer may be being written elsewhere (``generating``)
      title.textContent = s.current?.title || "New chat";
      drawMessages();
      drawSettings();
      drawPicker();
      drawList();
      if (id) scrollToEnd(true);
      else input.focus();
    }

    // An answer another window (or the CLI) writes here shows as being written, with Stop;
    // the conversation is read again on its conversation.changed events (and polled meanwhile).
    let remoteTimer = null;
    function markRemote() {
      clearTimeout(remoteTimer);
      const c = s.current;
      s.remote = !!(c && c.generating && s.generating?.conversation !== c.id);
      if (s.remote) {
        const last = c.messages[c.messages.length - 1];
        if (last?.role === "assistant" && last.state === "streaming") last.status = REMOTE_STATUS;
        else
          c.messages.push({
            role: "assistant",
            content: "",
            state: "streaming",
            status: REMOTE_STATUS,
            model: c.model,
            provider: c.provider,
          });
        remoteTimer = setTimeout(refreshCurrent, REMOTE_POLL_MS);
      }
      setBusy(!!s.generating || s.remote);
    }

    // Messages this page sent have no id until reloaded: they match on what they say.
    const sameMessages = (shown, stored) =>
      shown.length === stored.length &&
      shown.every(
        (m, i) =>
          m.role === stored[i].role &&
          m.state === stored[i].state &&
          m.content === stored[i].content &&
          (!m.id || m.id === stored[i].id),
      );

    async function refreshCurrent() {
      const c = s.current;
      const mine = () => s.current !== c || s.generating?.conversation === c.id; // or gone
      if (!c || mine()) return;
      let fresh;
      try {
        fresh = await get(`/api/conversations/${encodeURIComponent(c.id)}`);
      } catch (err) {
        if (s.current === c && err instanceof ApiError && err.status === 404)
          location.hash = "#/chat";
        else if (s.current === c && s.remote)
          remoteTimer = setTimeout(refreshCurrent, REMOTE_POLL_MS);
        return;
      }
      if (mine()) return;
      const changed =
        s.remote ||
        fresh.generating ||
        fresh.title !== c.title ||
        !sameMessages(c.messages, fresh.messages);
      s.current = fresh;
      markRemote();
      if (changed) {
        title.textContent = fresh.title;
        drawMessages();
        drawPicker();
        scrollToEnd();
      }
    }

    // -- messages --------------------------------------------------------------------------
    function drawMessages() {
      const msgs = s.current?.messages || [];
      s.views = msgs.map((m) => messageView(m, { onRegenerate: regenerate }));
      if (!msgs.length) {
        const chosen = chosenModel();
        render(
          messages,
          h(
            "div",
            { class: "chat-empty" },
            h("div", { class: "chat-empty-mark" }, icon("chat", 36)),
            h("h2", {}, chosen ? `Chat with ${chosen.name}` : "Pick a model to chat with"),
            h(
              "p",
              { class: "muted" },
              chosen
                ? `${PROVIDER_LABELS[chosen.provider] || chosen.provider}. Answers stream in as they are written.`
                : "Models that can chat appear in the list above.",
            ),
          ),
        );
        return;
      }
      render(
        messages,
        h(
          "div",
          { class: "chat-thread" },
          s.views.map((v) => v.root),
        ),
      );
      refreshViews();
    }

    function refreshViews() {
      const lastAssistant = s.views.findLastIndex((v) => v.msg.role === "assistant");
      s.views.forEach((v, i) =>
        v.update({
          isLast: i === lastAssistant && i === s.views.length - 1,
          busy: !!s.generating || s.remote,
        }),
      );
    }

    function nearBottom() {
      return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    }

    function scrollToEnd(force = false) {
      if (force || s.stick) messages.scrollTop = messages.scrollHeight;
    }

    // -- settings --------------------------------------------------------------------------
    function drawSettings() {
      const source = s.current || s.draft;
      const form = settingsForm(
        source,
        async (system, options) => {
          if (s.current) {
            const updated = await patch(`/api/conversations/${s.current.id}`, { system, options });
            s.current.system = updated.system;
            s.current.options = updated.options;
          } else {
            s.draft = { system, options };
          }
          toggleSettings(false);
        },
        () => toggleSettings(false),
      );
      render(settings, h("h2", {}, "System prompt and options"), form);
    }

    function toggleSettings(show = settings.classList.contains("hidden")) {
      settings.classList.toggle("hidden", !show);
      settingsBtn.setAttribute("aria-expanded", String(show));
      if (show) settings.querySelector("textarea")?.focus();
    }

    // -- sending ---------------------------------------------------------------------------
    function setBusy(busy) {
      sendBtn.classList.toggle("hidden", busy);
      stopBtn.classList.toggle("hidden", !busy);
      picker.disabled = busy || !picker.options.length || !picker.value;
    }

    async function ensureConversation() {
      if (s.current) return s.current;
      const m = chosenModel();
      if (!m)
        throw new ApiError(400, {
          detail: "Pick a model first.",
          hint: "Models that can chat appear in the list.",
        });
      const body = {
        provider: m.provider,
        model: m.name,
        system: s.draft.system,
        options: s.draft.options,
      };
      if (m.instance_id) body.instance_id = m.instance_id;
      const created = await post("/api/conversations", body);
      s.current = { ...created, messages: [] };
      s.conversations.unshift(created);
      history.replaceState(null, "", `#/chat/${created.id}`);
      title.textContent = created.title;
      drawMessages();
      return s.current;
    }

    async function stream(body, answer) {
      const conv = s.current;
      const controller = new AbortController();
      s.generating = { controller, answer, conversation: conv.id };
      setBusy(true);
      refreshViews();
      let frame = 0;
      const view = s.views[s.views.length - 1];
      const paint = () => {
        frame = 0;
        view.update({ isLast: true, busy: true });
        scrollToEnd();
      };
      const schedule = () => {
        s.stick = s.stick || nearBottom();
        if (!frame) frame = requestAnimationFrame(paint);
      };
      try {
        const headers = { "Content-Type": "application/json" };
        if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
        const resp = await fetch(`/api/conversations/${conv.id}/messages`, {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          signal: controller.signal,
        });
        if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
        await readEvents(resp, (ev) => {
          onEvent(ev, answer, conv);
          schedule();
        });
      } catch (err) {
        if (err.name === "AbortError") {
          answer.state = "stopped";
        } else {
          Object.assign(answer, {
            state: "error",
            error: err.detail || err.message,
            code: err.code,
            hint: err.hint,
          });
        }
      } finally {
        if (answer.state === "streaming") answer.state = "stopped";
        cancelAnimationFrame(frame);
        if (s.generating?.answer === answer) s.generating = null;
        setBusy(false);
        if (s.current === conv) {
          refreshViews();
          scrollToEnd();
        }
        loadList();
      }
    }

    function onEvent(ev, answer, conv) {
      if (ev.type === "start") {
        Object.assign(answer, { id: ev.message_id, model: ev.model, provider: ev.provider });
        if (ev.title && conv.title !== ev.title) {
          conv.title = ev.title;
          if (s.current === conv) title.textContent = ev.title;
          const listed = s.conversations.find((c) => c.id === conv.id);
          if (listed) {
            listed.title = ev.title;
            drawList();
          }
        }
      } else if (ev.type === "status") {
        answer.status = ev.text;
      } else if (ev.type === "token") {
        answer.content += ev.text;
      } else if (ev.type === "done") {
        Object.assign(answer, {
          state: ev.state,
          ttft_ms: ev.ttft_ms,
          tokens_per_s: ev.tokens_per_s,
          usage: ev.usage,
          trimmed: ev.trimmed,
        });
      } else if (ev.type === "error") {
        Object.assign(answer, { state: "error", error: ev.detail, code: ev.code, hint: ev.hint });
      }
    }

    function pendingAnswer() {
      const m = chosenModel();
      return {
        role: "assistant",
        content: "",
        state: "streaming",
        status: "",
        model: m?.name,
        provider: m?.provider,
      };
    }

    async function sendText(text) {
      if (s.generating || !text.trim()) return;
      if (s.remote)
        return toast("An answer is still being written in this chat: wait for it, or stop it.");
      try {
        await ensureConversation();
      } catch (err) {
        toastError(err);
        return;
      }
      input.value = "";
      autosize();
      const user = { role: "user", content: text, state: "complete" };
      const answer = pendingAnswer();
      s.current.messages.push(user, answer);
      s.stick = true;
      drawMessages();
      scrollToEnd(true);
      await stream({ content: text }, answer);
    }

    async function regenerate() {
      if (s.generating || s.remote || !s.current) return;
      const msgs = s.current.messages;
      while (msgs.length && msgs[msgs.length - 1].role === "assistant") msgs.pop();
      const answer = pendingAnswer();
      msgs.push(answer);
      s.stick = true;
      drawMessages();
      scrollToEnd(true);
      await stream({ regenerate: true }, answer);
    }

    async function stop() {
      const gen = s.generating;
      const elsewhere = !gen && s.remote ? s.current : null; // written by another window
      if (!gen && !elsewhere) return;
      stopBtn.disabled = true;
      try {
        await post(`/api/conversations/${gen ? gen.conversation : elsewhere.id}/stop`);
        if (elsewhere) await refreshCurrent();
      } catch (err) {
        if (gen)
          gen.controller.abort(); // closing the request stops the answer too
        else toastError(err);
      } finally {
        stopBtn.disabled = false;
      }
    }

    function stopNow() {
      s.generating?.controller.abort();
      s.generating = null;
      setBusy(false);
    }

    // -- composer --------------------------------------------------------------------------
    function autosize() {
      input.style.height = "auto";
      input.style.height = `${Math.min(input.scrollHeight, 220)}px`;
    }
    input.addEventListener("input", autosize);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        sendText(input.value);
      }
    });
    composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sendText(input.value);
    });
    stopBtn.addEventListener("click", stop);
    const onKey = (ev) => {
      if (ev.key === "Escape" && (s.generating || s.remote)) stop();
    };
    document.addEventListener("keydown", onKey);
    messages.addEventListener("scroll", () => {
      s.stick = nearBottom();
    });
    newBtn.addEventListener("click", () => {
      if (location.hash === "#/chat") open(null);
      else location.hash = "#/chat";
    });
    settingsBtn.addEventListener("click", () => toggleSettings());
    menuBtn.addEventListener("click", () => layout.toggleAttribute("data-side"));
    search.addEventListener("input", () => {
      s.filter = search.value;
      drawList();
    });

    // -- live updates ----------------------------------------------------------------------
    let listTimer = null,
      modelTimer = null,
      convTimer = null;
    const offConv = events.on("conversation.changed", (ev) => {
      clearTimeout(listTimer);
      listTimer = setTimeout(loadList, 300);
      // Another window (or the CLI) sent a message here, or its answer ended: show it.
      const id = ev.data?.id;
      if (id && id === s.current?.id && s.generating?.conversation !== id) {
        clearTimeout(convTimer);
        convTimer = setTimeout(refreshCurrent, 100);
      }
    });
    const reloadModels = () => {
      clearTimeout(modelTimer);
      modelTimer = setTimeout(loadModels, 300);
    };
    const offModels = events.on("catalog.changed", reloadModels);
    const offState = events.on("model.state", reloadModels);

    this.update = (newArgs) => {
      args = newArgs;
      open(newArgs[0] || null);
    };
    await Promise.all([loadModels(), loadList()]);
    await open(args[0] || null);

    return () => {
      stopNow();
      [listTimer, modelTimer, convTimer, remoteTimer].forEach(clearTimeout);
      offConv();
      offModels();
      offState();
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("resize", fitHeight);
    };
  },
};
