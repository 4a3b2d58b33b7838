// The Downloads page's API calls.
import { del, get, post } from "../../js/api.js";

export const DOWNLOADS_PATH = "/api/downloads";
const taskPath = (id) => `${DOWNLOADS_PATH}/${encodeURIComponent(id)}`;

export const firstRequests = () => [DOWNLOADS_PATH];
export const listDownloads = () => get(DOWNLOADS_PATH);
export const deleteDownload = (id) => del(taskPath(id));
/** pause, resume, cancel or retry; answers the task. */
export const changeDownload = (id, action) => post(`${taskPath(id)}/${action}`);
export const downloadLog = (id) => get(`${taskPath(id)}/log?lines=200`);
