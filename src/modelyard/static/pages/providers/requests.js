// The Providers page's API calls.
import { del, get, patch, post } from "../../js/api.js";
import { readLog, saveFile } from "../../js/logview.js";
import { PATHS } from "../../js/paths.js";

const instancesOf = (provider) => `${PATHS.instances}/${encodeURIComponent(provider)}/instances`;
const instancePath = (inst) => `${instancesOf(inst.provider)}/${encodeURIComponent(inst.id)}`;

export const listInstances = () => get(PATHS.instances);
/** Every instance's status; `refresh` checks them all now instead of answering the cache. */
export const listStatuses = (refresh) =>
  get(refresh ? `${PATHS.statuses}?refresh=true` : PATHS.statuses);
export const connectionInfo = () => get(PATHS.connection);
/** start, stop or restart; answers the status. */
export const controlInstance = (inst, action) => post(`${instancePath(inst)}/${action}`);
export const instanceHistory = (inst) => get(`${instancePath(inst)}/history`);
/** What the log viewer reads of a managed instance's log. */
export const instanceLogSource = (inst) => ({
  load: (filter) => readLog(`${instancePath(inst)}/logs`, filter),
  socketPath: `/ws/providers/${encodeURIComponent(inst.provider)}/instances/${encodeURIComponent(inst.id)}/logs`,
  download: () => saveFile(`${instancePath(inst)}/logs/file`, `${inst.provider}-${inst.id}.log`),
});
export const addInstance = (provider, body) => post(instancesOf(provider), body);
export const editInstance = (inst, body) => patch(instancePath(inst), body);
export const removeInstance = (inst) => del(instancePath(inst));
/** A container instance's CPU and memory use (Docker takes about a second to sample). */
export const containerStats = (inst) => get(`${instancePath(inst)}/container/stats`);
/** Recreate the container from `tag` of its configured image (empty: the configured tag). */
export const recreateContainer = (inst, tag) =>
  post(`${instancePath(inst)}/container/recreate`, tag ? { tag } : {});
