// The Providers page's API calls.
import { del, get, patch, post } from "../../js/api.js";

export const INSTANCES_PATH = "/api/providers";
const STATUS_PATH = "/api/providers/status";
const CONNECTION_PATH = "/api/connection-info";
const instancesOf = (provider) => `${INSTANCES_PATH}/${encodeURIComponent(provider)}/instances`;
const instancePath = (inst) => `${instancesOf(inst.provider)}/${encodeURIComponent(inst.id)}`;

export const firstRequests = () => [INSTANCES_PATH, STATUS_PATH, CONNECTION_PATH];
export const listInstances = () => get(INSTANCES_PATH);
/** Every instance's status; `refresh` checks them all now instead of answering the cache. */
export const listStatuses = (refresh) => get(refresh ? `${STATUS_PATH}?refresh=true` : STATUS_PATH);
export const connectionInfo = () => get(CONNECTION_PATH);
/** start, stop or restart; answers the status. */
export const controlInstance = (inst, action) => post(`${instancePath(inst)}/${action}`);
export const instanceHistory = (inst) => get(`${instancePath(inst)}/history`);
export const instanceLogs = (inst) => get(`${instancePath(inst)}/logs?lines=200`);
export const addInstance = (provider, body) => post(instancesOf(provider), body);
export const editInstance = (inst, body) => patch(instancePath(inst), body);
export const removeInstance = (inst) => del(instancePath(inst));
