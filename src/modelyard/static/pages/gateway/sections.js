// The Gateway page's sections, in page order. A section is a module whose default export is
//   { id, title, mount(root, ctx) }
// `root` is the section's own <section> element, under a heading the page draws from `title`;
// `ctx` is { info } — GET /api/gateway/info's answer (base_url, tls, endpoints, models,
// snippets) — and `mount` returns, or resolves to, a cleanup function (or nothing), called
// when the page goes away. A section that fails shows its error and leaves the others be.
import endpoints from "./endpoints.js";
import keys from "./keys.js";
import requestLog from "./log.js";
import usage from "./usage.js";

export const SECTIONS = [endpoints, keys, usage, requestLog];
