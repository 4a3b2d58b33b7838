// The Downloads page's API calls.
import { del, get, post } from "../../js/api.js";
import { PATHS } from "../../js/paths.js";

const taskPath = (id) => `${PATHS.downloads}/${encodeURIComponent(id)}`;

export const listDownloads = () => get(PATHS.downloads);
export const deleteDownload = (id) => del(taskPath(id));
/** pause, resume, cancel or retry; answers the task. */
export const changeDownload = (id, action) => post(`${taskPath(id)}/${action}`);
export const downloadLog = (id) => get(`${taskPath(id)}/log?lines=200`);
