// The Models page's API calls. `searchPath` builds the one URL of a search, so the request the
// shell starts early and the page's own first search are the same request.
import { del, get, post } from "../../js/api.js";
import { RECOMMENDED_PATH } from "../get/requests.js";

const GB = 1e9;
/** Size filters: [label, min bytes, max bytes]. */
export const SIZES = {
  "": ["Any size", null, null],
  small: ["Under 1 GB", null, GB - 1],
  medium: ["1–5 GB", GB, 5 * GB],
  large: ["5–20 GB", 5 * GB, 20 * GB],
  huge: ["Over 20 GB", 20 * GB, null],
};
export const FIRST_QUERY = Object.freeze({
  q: "",
  status: "",
  provider: "",
  source: "",
  size: "",
  sort: "name",
  order: "asc",
  page: 1,
  pageSize: 50,
});
const INSTANCES_PATH = "/api/providers";

export function searchPath(query) {
  const [, min, max] = SIZES[query.size] || SIZES[""];
  const params = new URLSearchParams({
    sort: query.sort,
    order: query.order,
    page: query.page,
    page_size: query.pageSize,
  });
  for (const name of ["q", "status", "provider", "source"]) {
    if (query[name]) params.set(name, query[name]);
  }
  if (min !== null) params.set("min_size", min);
  if (max !== null) params.set("max_size", max);
  return `/api/models/search?${params}`;
}

export const firstRequests = () => [searchPath(FIRST_QUERY), INSTANCES_PATH, RECOMMENDED_PATH];

/** A model's stable identity, as the table's rows and the selection know it. */
export const modelKey = (m) => JSON.stringify([m.provider, m.instance_id, m.name]);
export const modelRef = (m) => ({ provider: m.provider, name: m.name, instance_id: m.instance_id });

export const searchModels = (query) => get(searchPath(query));
export const listInstances = () => get(INSTANCES_PATH);
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
