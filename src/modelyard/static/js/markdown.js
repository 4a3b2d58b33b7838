// A small, safe Markdown renderer for model output. It builds DOM nodes and sets text with
// textContent only: whatever a model writes (<script>, <img onerror>, javascript: links) ends
// up as visible text, never as HTML. Supported: paragraphs (single newlines are line breaks),
// headings, emphasis, strikethrough, inline code, fenced code blocks with a copy button,
// lists (nested by indentation), block quotes, tables, rules and links (http, https and
// mailto only; images are shown as links and never loaded). An unterminated code fence runs
// to the end, so a block being streamed already looks like code.

const SAFE_SCHEMES = ["http:", "https:", "mailto:"];
const PUNCTUATION = "\\`*_{}[]()#+-.!|~<>\"'";
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) node.append(child);
  return node;
}

function text(value) {
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

// -- inline -----------------------------------------------------------------------------

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

function withBreaks(src) {
  const nodes = [];
  src.split("\n").forEach((line, index) => {
    if (index) nodes.push(document.createElement("br"));
    nodes.push(...inline(line));
  });
  return nodes;
}

// -- blocks -----------------------------------------------------------------------------

function copyText(value, button) {
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  };
  if (navigator.clipboard?.writeText) {
    navigator.clipboard.writeText(value).then(done, () => fallbackCopy(value, done));
  } else {
    fallbackCopy(value, done);
  }
}

function fallbackCopy(value, done) {
  const area = el("textarea", "");
  area.value = value;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  try {
    document.execCommand("copy");
    done();
  } finally {
    area.remove();
  }
}

function codeBlock(code, lang) {
  const button = el("button", "md-copy", text("Copy"));
  button.type = "button";
  button.setAttribute("aria-label", "Copy code");
  button.addEventListener("click", () => copyText(code, button));
  const codeEl = el("code", "", text(code));
  if (lang) codeEl.dataset.lang = lang;
  return el(
    "div",
    "md-codeblock",
    el("div", "md-code-head", el("span", "md-lang", text(lang || "code")), button),
    el("pre", "", codeEl),
  );
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function table(lines) {
  const aligns = cells(lines[1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : "",
  );
  const row = (line, tag) =>
    el(
      "tr",
      "",
      ...cells(line).map((c, k) => {
        const cell = el(tag, "", ...inline(c));
        if (aligns[k]) cell.style.textAlign = aligns[k];
        return cell;
      }),
    );
  return el(
    "div",
    "md-table",
    el(
      "table",
      "",
      el("thead", "", row(lines[0], "th")),
      el("tbody", "", ...lines.slice(2).map((l) => row(l, "td"))),
    ),
  );
}

function list(items) {
  // items: [{indent, ordered, number, text}] of one level and their deeper children.
  const first = items[0];
  const node = el(first.ordered ? "ol" : "ul", "md-list");
  if (first.ordered && first.number !== 1) node.start = first.number;
  let current = null;
  let nested = [];
  const closeNested = () => {
    if (current && nested.length) current.append(list(nested));
    nested = [];
  };
  for (const item of items) {
    if (item.indent > first.indent + 1 && current) {
      nested.push(item);
      continue;
    }
    closeNested();
    current = el("li", "", ...withBreaks(item.text));
    node.append(current);
  }
  closeNested();
  return node;
}

function collectList(lines, i) {
  const items = [];
  while (i < lines.length) {
    const match = ITEM.exec(lines[i]);
    if (match) {
      const marker = match[2];
      items.push({
        indent: match[1].replace(/\t/g, "    ").length,
        ordered: /\d/.test(marker),
        number: parseInt(marker, 10) || 1,
        text: match[3],
      });
      i += 1;
    } else if (items.length && lines[i].trim() && /^\s+/.test(lines[i])) {
      items[items.length - 1].text += `\n${lines[i].trim()}`; // a continuation line
      i += 1;
    } else {
      break;
    }
  }
  return { node: list(items), end: i };
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_RULE.test(next))
  );
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) {
      i += 1;
    } else if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const body = [];
      i += 1;
      while (
        i < lines.length &&
        !(
          lines[i].trim().startsWith(fence[0].repeat(fence.length)) &&
          /^\s*[`~]+\s*$/.test(lines[i])
        )
      ) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      out.push(codeBlock(body.join("\n"), match[2]));
    } else if ((match = HEADING.exec(line))) {
      out.push(
        el(
          `h${Math.min(match[1].length + 2, 6)}`,
          `md-h md-h${match[1].length}`,
          ...inline(match[2]),
        ),
      );
      i += 1;
    } else if (RULE.test(line)) {
      out.push(el("hr", "md-rule"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (match = QUOTE.exec(lines[i]))) {
        inner.push(match[1]);
        i += 1;
      }
      out.push(el("blockquote", "md-quote", ...blocks(inner)));
    } else if (ITEM.test(line)) {
      const { node, end } = collectList(lines, i);
      out.push(node);
      i = end;
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      const rows = [line, lines[i + 1]];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
        rows.push(lines[i]);
        i += 1;
      }
      out.push(table(rows));
    } else {
      const para = [line];
      i += 1;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
        para.push(lines[i]);
        i += 1;
      }
      out.push(el("p", "", ...withBreaks(para.join("\n"))));
    }
  }
  return out;
}

/** Markdown text → a DocumentFragment of safe nodes. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  fragment.append(
    ...blocks(
      String(source ?? "")
        .replace(/\r\n?/g, "\n")
        .split("\n"),
    ),
  );
  return fragment;
}

/** Replace an element's content with the rendered Markdown. */
export function markdownInto(target, source) {
  target.replaceChildren(renderMarkdown(source));
  return target;
}
