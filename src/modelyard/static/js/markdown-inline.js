// Markdown's inline parts (emphasis, strikethrough, code spans, links) as safe DOM nodes:
// text goes through text nodes only, and links only to http, https and mailto.

const SAFE_SCHEMES = ["http:", "https:", "mailto:"];
const PUNCTUATION = "\\`*_{}[]()#+-.!|~<>\"'";

export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) node.append(child);
  return node;
}

export function text(value) {
  return document.createTextNode(value);
}

/** The href to use, or null when the URL is not safe to link to. */
export function safeUrl(raw) {
  const value = raw.trim().replace(/^<|>$/g, "");
  try {
    const url = new URL(value);
    return SAFE_SCHEMES.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, children) {
  const a = el("a", "md-link", ...children);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}

function run(src, i) {
  let n = 0;
  while (src[i + n] === src[i]) n += 1;
  return n;
}

function codeSpan(src, i) {
  const n = run(src, i);
  const fence = "`".repeat(n);
  let j = src.indexOf(fence, i + n);
  while (j !== -1 && run(src, j) !== n) j = src.indexOf(fence, j + run(src, j));
  if (j === -1) return null;
  let code = src.slice(i + n, j);
  if (/^ .* $/.test(code)) code = code.slice(1, -1);
  return { node: el("code", "md-code-inline", text(code)), end: j + n };
}

function bracketed(src, i) {
  // [label](url) starting at i (src[i] === "["); returns {label, url, end} or null.
  let depth = 0;
  let j = i;
  for (; j < src.length; j += 1) {
    if (src[j] === "\\") {
      j += 1;
      continue;
    }
    if (src[j] === "[") depth += 1;
    if (src[j] === "]" && --depth === 0) break;
  }
  if (j >= src.length || src[j + 1] !== "(") return null;
  const close = src.indexOf(")", j + 2);
  if (close === -1) return null;
  const target =
    src
      .slice(j + 2, close)
      .trim()
      .split(/\s+/)[0] || "";
  return { label: src.slice(i + 1, j), url: target, end: close + 1 };
}

function linkAt(src, i, image) {
  const parsed = bracketed(src, image ? i + 1 : i);
  if (!parsed) return null;
  const href = safeUrl(parsed.url);
  const raw = src.slice(i, parsed.end);
  if (!href) return { node: text(raw), end: parsed.end };
  // Images are never loaded (they could track the reader); they become links.
  const label = image ? [text(`🖼 ${parsed.label || href}`)] : inline(parsed.label, false);
  return { node: link(href, label), end: parsed.end };
}

function autolink(src, i) {
  if (src[i] === "<") {
    const close = src.indexOf(">", i);
    const href = close > i ? safeUrl(src.slice(i + 1, close)) : null;
    return href ? { node: link(href, [text(src.slice(i + 1, close))]), end: close + 1 } : null;
  }
  const match = /^https?:\/\/[^\s<>"]+/.exec(src.slice(i));
  if (!match || (i > 0 && !/[\s(*_~]/.test(src[i - 1]))) return null;
  const url = match[0].replace(/[.,:;!?)'"]+$/, "");
  const href = safeUrl(url);
  return href ? { node: link(href, [text(url)]), end: i + url.length } : null;
}

const WRAPPERS = { 1: ["em"], 2: ["strong"], 3: ["strong", "em"] };

function emphasis(src, i) {
  const ch = src[i];
  const n = Math.min(run(src, i), ch === "~" ? 2 : 3);
  if (ch === "~" && n !== 2) return null;
  const after = src[i + n];
  if (!after || /\s/.test(after)) return null;
  if (ch === "_" && i > 0 && /[\p{L}\p{N}]/u.test(src[i - 1])) return null;
  const marker = ch.repeat(n);
  let j = src.indexOf(marker, i + n + 1);
  while (
    j !== -1 &&
    (/\s/.test(src[j - 1]) || (ch === "_" && /[\p{L}\p{N}]/u.test(src[j + n] || "")))
  ) {
    j = src.indexOf(marker, j + 1);
  }
  if (j === -1) return null;
  const inner = inline(src.slice(i + n, j));
  if (ch === "~") return { node: el("del", "", ...inner), end: j + n };
  const [outer, innermost] = WRAPPERS[n];
  const node = el(outer, "", ...(innermost ? [el(innermost, "", ...inner)] : inner));
  return { node, end: j + n };
}

/** Inline Markdown → an array of nodes. */
export function inline(src, links = true) {
  const out = [];
  let buffer = "";
  const flush = () => {
    if (buffer) {
      out.push(text(buffer));
      buffer = "";
    }
  };
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    let found = null;
    if (ch === "\\" && PUNCTUATION.includes(src[i + 1] || "")) {
      buffer += src[i + 1];
      i += 2;
      continue;
    }
    if (ch === "`") found = codeSpan(src, i);
    else if (links && ch === "!" && src[i + 1] === "[") found = linkAt(src, i, true);
    else if (links && ch === "[") found = linkAt(src, i, false);
    else if (links && (ch === "<" || ch === "h")) found = autolink(src, i);
    else if (ch === "*" || ch === "_" || ch === "~") found = emphasis(src, i);
    if (found) {
      flush();
      out.push(found.node);
      i = found.end;
    } else {
      const n = ch === "`" || ch === "*" || ch === "_" || ch === "~" ? run(src, i) : 1;
      buffer += src.slice(i, i + n);
      i += n;
    }
  }
  flush();
  return out;
}

export function withBreaks(src) {
  const nodes = [];
  src.split("\n").forEach((line, index) => {
    if (index) nodes.push(document.createElement("br"));
    nodes.push(...inline(line));
  });
  return nodes;
}
