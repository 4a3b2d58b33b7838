// The API paths the pages read first, in one place: the shell starts a page's first requests
// before the page's code arrives (js/pages.js), and the page then asks for the very same paths.

export const PATHS = {
  kinds: "/api/providers/kinds",
  instances: "/api/providers",
  containers: "/api/containers",
  statuses: "/api/providers/status",
  connection: "/api/connection-info",
  recommended: "/api/models/available",
  schedule: "/api/models/schedule",
  modelList: "/api/models/list",
  downloads: "/api/downloads",
  conversations: "/api/conversations",
  resources: "/api/system/resources",
  audit: "/api/audit",
  gatewayInfo: "/api/gateway/info",
};

export const conversationPath = (id) => `${PATHS.conversations}/${encodeURIComponent(id)}`;

/** The Models page's search as it opens: every model, by name, its first page. */
export const FIRST_SEARCH = Object.freeze({
  q: "",
  status: "",
  provider: "",
  source: "",
  sort: "name",
  order: "asc",
  page: 1,
  pageSize: 50,
});

/** A search of the catalog; `minSize`/`maxSize` in bytes (absent: no bound). */
export function searchPath(query) {
  const params = new URLSearchParams({
    sort: query.sort,
    order: query.order,
    page: query.page,
    page_size: query.pageSize,
  });
  for (const name of ["q", "status", "provider", "source"]) {
    if (query[name]) params.set(name, query[name]);
  }
  if (query.minSize !== null && query.minSize !== undefined) params.set("min_size", query.minSize);
  if (query.maxSize !== null && query.maxSize !== undefined) params.set("max_size", query.maxSize);
  return `/api/models/search?${params}`;
}
