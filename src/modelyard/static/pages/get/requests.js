// The Get models page's API calls: instances that pull, the recommended list, new downloads,
// a Hugging Face repository's files.
import { get, post } from "../../js/api.js";

export const INSTANCES_PATH = "/api/providers";
export const RECOMMENDED_PATH = "/api/models/available";

export const firstRequests = () => [RECOMMENDED_PATH, INSTANCES_PATH];
export const listInstances = () => get(INSTANCES_PATH);
export const listRecommended = () => get(RECOMMENDED_PATH);
export const installRecommended = (id) => post("/api/models/install", { id });
export const startDownload = (body) => post("/api/downloads", body);

export function listHubFiles(repo, revision, ctxSize) {
  const query = new URLSearchParams({ repo, revision, ctx_size: ctxSize });
  return get(`/api/downloads/hf/files?${query}`);
}
