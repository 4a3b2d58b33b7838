// The dashboard's pages, in navigation order. A page is the folder pages/<name>/ (its
// index.js exports {mount(root, {args}) -> cleanup, update?(args)}) and one line here; its
// `requests(args)` are the GET paths it reads first, started while its modules load.
import * as chat from "../pages/chat/requests.js";
import * as downloads from "../pages/downloads/requests.js";
import * as get from "../pages/get/requests.js";
import * as models from "../pages/models/requests.js";
import * as providers from "../pages/providers/requests.js";
import * as system from "../pages/system/requests.js";

export const PAGES = [
  { name: "models", title: "Models", requests: models.firstRequests },
  { name: "get", title: "Get models", requests: get.firstRequests },
  { name: "downloads", title: "Downloads", requests: downloads.firstRequests },
  { name: "providers", title: "Providers", requests: providers.firstRequests },
  { name: "chat", title: "Chat", requests: chat.firstRequests },
  { name: "system", title: "System", requests: system.firstRequests },
];
export const DEFAULT_PAGE = "models";
