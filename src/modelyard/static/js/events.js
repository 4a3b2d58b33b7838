// Live updates over WS /ws/events: a snapshot on every (re)connect, then deltas.
// Reconnects with exponential backoff; listeners re-read state from each snapshot.
import { apiKey } from "./api.js";

class EventsClient {
  constructor() {
    this.ws = null;
    this.state = "connecting";
    this.snapshot = null;
    this.listeners = new Set(); // {pattern, fn}
    this.stateListeners = new Set();
    this.snapshotListeners = new Set();
    this.backoff = 500;
    this.timer = null;
  }

  connect() {
    clearTimeout(this.timer);
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const key = apiKey();
    const query = key ? `?access_token=${encodeURIComponent(key)}` : "";
    const ws = new WebSocket(`${proto}://${location.host}/ws/events${query}`);
    this.ws = ws;
    this.setState("connecting");
    ws.onmessage = (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (event.type === "snapshot") {
        this.backoff = 500;
        this.snapshot = event.data;
        this.setState("open");
        for (const fn of this.snapshotListeners) fn(event.data);
        return;
      }
      for (const { pattern, fn } of this.listeners) {
        if (matches(pattern, event.type)) fn(event);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.setState("closed");
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
    ws.onerror = () => ws.close();
  }

  setState(state) {
    this.state = state;
    for (const fn of this.stateListeners) fn(state);
  }

  /** Listen to events whose type matches `pattern` ("download.*"); returns an unsubscribe. */
  on(pattern, fn) {
    const entry = { pattern, fn };
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  /** Called on every snapshot (every reconnect); `immediate` also calls it with the last one. */
  onSnapshot(fn, immediate = true) {
    this.snapshotListeners.add(fn);
    if (immediate && this.snapshot) fn(this.snapshot);
    return () => this.snapshotListeners.delete(fn);
  }

  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }
}

function matches(pattern, type) {
  if (pattern === "*" || pattern === type) return true;
  return pattern.endsWith("*") && type.startsWith(pattern.slice(0, -1));
}

export const events = new EventsClient();
