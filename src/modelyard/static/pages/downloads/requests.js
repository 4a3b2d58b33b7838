// The Downloads page's API calls.
import { del, get, post } from "../../js/api.js";
import { readLog, saveFile } from "../../js/logview.js";
import { PATHS } from "../../js/paths.js";

const taskPath = (id) => `${PATHS.downloads}/${encodeURIComponent(id)}`;

export const listDownloads = () => get(PATHS.downloads);
export const deleteDownload = (id) => del(taskPath(id));
/** pause, resume, cancel or retry; answers the task. */
export const changeDownload = (id, action) => post(`${taskPath(id)}/${action}`);
/** What the log viewer reads of a download's log (filtered as an instance's is). */
export const downloadLogSource = (id) => ({
  load: (filter) => readLog(`${taskPath(id)}/log`, filter),
  socketPath: `/ws/downloads/${encodeURIComponent(id)}/log`,
  download: () => saveFile(`${taskPath(id)}/log/file`, `download-${id}.log`),
});
