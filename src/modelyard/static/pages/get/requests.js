// The Get models page's API calls: instances that pull, the recommended list, new downloads,
// a Hugging Face repository's files.
import { get, post } from "../../js/api.js";
import { PATHS } from "../../js/paths.js";

export const listInstances = () => get(PATHS.instances);
export const listRecommended = () => get(PATHS.recommended);
export const installRecommended = (id) => post("/api/models/install", { id });
export const startDownload = (body) => post("/api/downloads", body);

export function listHubFiles(repo, revision, ctxSize) {
  const query = new URLSearchParams({ repo, revision, ctx_size: ctxSize });
  return get(`/api/downloads/hf/files?${query}`);
}
