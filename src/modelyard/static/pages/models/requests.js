// The Models page's API calls. A search's URL comes from js/paths.js, so the request the
// shell starts early and the page's own first search are the same request.
import { del, get, post } from "../../js/api.js";
import { FIRST_SEARCH, PATHS, searchPath } from "../../js/paths.js";

const GB = 1e9;
/** Size filters: [label, min bytes, max bytes]. */
export const SIZES = {
  "": ["Any size", null, null],
  small: ["Under 1 GB", null, GB - 1],
  medium: ["1–5 GB", GB, 5 * GB],
  large: ["5–20 GB", 5 * GB, 20 * GB],
  huge: ["Over 20 GB", 20 * GB, null],
};
export const FIRST_QUERY = Object.freeze({ ...FIRST_SEARCH, size: "" });

/** A model's stable identity, as the table's rows and the selection know it. */
export const modelKey = (m) => JSON.stringify([m.provider, m.instance_id, m.name]);
export const modelRef = (m) => ({ provider: m.provider, name: m.name, instance_id: m.instance_id });

export function searchModels(query) {
  const [, minSize, maxSize] = SIZES[query.size] || SIZES[""];
  return get(searchPath({ ...query, minSize, maxSize }));
}
export const listInstances = () => get(PATHS.instances);
/** The scheduler's view of every model it has decided about (docs/GATEWAY.md). */
export const modelSchedule = () => get(PATHS.schedule);
/** The scheduler's name for a model: provider/instance/name. */
export const scheduleKey = (m) => `${m.provider}/${m.instance_id}/${m.name}`;
export const syncCatalog = () => post("/api/models/sync");
export const runBatch = (action, models) =>
  post("/api/models/batch", { action, models: models.map(modelRef) });

export function modelDetails(m) {
  const params = new URLSearchParams({
    provider: m.provider,
    name: m.name,
    instance_id: m.instance_id,
  });
  return get(`/api/models/details?${params}`);
}

export function deleteModel(m) {
  const name = m.name.split("/").map(encodeURIComponent).join("/");
  const query = m.instance_id ? `?instance_id=${encodeURIComponent(m.instance_id)}` : "";
  return del(`/api/models/${encodeURIComponent(m.provider)}/${name}${query}`);
}

/** start (optionally past the memory check), stop or recreate; answers the model. */
export function changeModel(m, action, force = false) {
  return post(
    `/api/models/${action}`,
    action === "start" ? { ...modelRef(m), force } : modelRef(m),
  );
}
