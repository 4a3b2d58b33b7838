// The dashboard's pages, in navigation order. A page is the folder pages/<name>/ (its
// index.js exports {mount(root, {args}) -> cleanup, update?(args)}) and one line here; its
// `requests(args)` are the GET paths it reads first, started while its modules load.
import { conversationPath, FIRST_SEARCH, PATHS, searchPath } from "./paths.js";

export const PAGES = [
  {
    name: "models",
    title: "Models",
    // Not the recommended models at its foot: drawn after the list, they are asked for then.
    requests: () => [searchPath(FIRST_SEARCH), PATHS.instances, PATHS.schedule],
  },
  { name: "get", title: "Get models", requests: () => [PATHS.recommended, PATHS.instances] },
  { name: "downloads", title: "Downloads", requests: () => [PATHS.downloads] },
  {
    name: "providers",
    title: "Providers",
    requests: () => [PATHS.instances, PATHS.statuses, PATHS.schedule, PATHS.connection],
  },
  {
    name: "chat",
    title: "Chat",
    requests: (args) => [
      PATHS.conversations,
      PATHS.modelList,
      ...(args[0] ? [conversationPath(args[0])] : []),
    ],
  },
  { name: "gateway", title: "Gateway", requests: () => [PATHS.gatewayInfo] },
  // Its cards are drawn once both answers are in.
  { name: "system", title: "System", requests: () => [PATHS.resources, PATHS.containers] },
  { name: "audit", title: "Audit", requests: () => [`${PATHS.audit}?limit=500`] },
];
// Named on index.html's root element, where its inline preloader reads it too.
export const DEFAULT_PAGE = document.documentElement.dataset.defaultPage;
