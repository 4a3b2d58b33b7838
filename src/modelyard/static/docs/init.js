// The API docs page (/docs): Swagger UI from modelyard's own files, over /openapi.json.
// A file of its own rather than an inline script, so the page runs under the same strict
// Content-Security-Policy as the dashboard.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
