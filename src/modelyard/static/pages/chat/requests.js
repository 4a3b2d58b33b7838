// The Chat page's API calls. An answer streams as text/event-stream from `sendMessage`.
import { ApiError, apiKey, del, get, patch, post } from "../../js/api.js";
import { conversationPath, PATHS } from "../../js/paths.js";

export const listModels = () => get(PATHS.modelList);
export const listConversations = () => get(PATHS.conversations);
export const readConversation = (id) => get(conversationPath(id));
export const createConversation = (body) => post(PATHS.conversations, body);
export const updateConversation = (id, body) => patch(conversationPath(id), body);
export const deleteConversation = (id) => del(conversationPath(id));
export const stopAnswer = (id) => post(`${conversationPath(id)}/stop`);

/** Send a message (or {regenerate: true}); the streaming response, once it has started. */
export async function sendMessage(id, body, signal) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const resp = await fetch(`${conversationPath(id)}/messages`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  return resp;
}

/** Read a text/event-stream response and call `onEvent` with each JSON event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const frames = buffer.split("\n\n");
    buffer = frames.pop(); // an unfinished frame waits for the rest
    for (const frame of frames) {
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
      }
    }
  }
}
