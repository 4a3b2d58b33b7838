// Inlined into index.html by the server (its hash is in the page's Content-Security-Policy),
// so it runs while the page is parsed, before any module has arrived: it preloads the modules
// of the page the URL names (the data block above it lists each page's), which then arrive
// beside the shell's instead of after boot.js has run. It only preloads; boot.js decides.
(() => {
  const pages = JSON.parse(document.getElementById("page-modules").textContent);
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  const modules = pages[name] || pages[document.documentElement.dataset.defaultPage] || [];
  const base = new URL("../", document.querySelector('script[src$="/js/boot.js"]').src);
  const links = modules.map((path) => {
    const link = document.createElement("link");
    link.rel = "modulepreload";
    link.href = new URL(path, base).href;
    return link;
  });
  document.head.append(...links);
})();
