// A small, safe Markdown renderer for model output. It builds DOM nodes and sets text with
// textContent only: whatever a model writes (<script>, <img onerror>, javascript: links) ends
// up as visible text, never as HTML. Supported: paragraphs (single newlines are line breaks),
// headings, emphasis, strikethrough, inline code, fenced code blocks with a copy button,
// lists (nested by indentation), block quotes, tables, rules and links (http, https and
// mailto only; images are shown as links and never loaded). An unterminated code fence runs
// to the end, so a block being streamed already looks like code.
import { el, inline, text, withBreaks } from "./markdown-inline.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/** Copy `value` to the clipboard; `button` says "Copied" for a moment. */
export function copyText(value, button) {
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

// Block readers: each takes the lines and the index of a block's first line, and answers
// {node, end} (end: the index after the block) when the block is of its kind, else null.

function fencedCode(lines, i) {
  const match = FENCE.exec(lines[i]);
  if (!match) return null;
  const fence = match[1];
  const closes = (line) =>
    line.trim().startsWith(fence[0].repeat(fence.length)) && /^\s*[`~]+\s*$/.test(line);
  let end = i + 1;
  while (end < lines.length && !closes(lines[end])) end += 1;
  return { node: codeBlock(lines.slice(i + 1, end).join("\n"), match[2]), end: end + 1 };
}

function heading(lines, i) {
  const match = HEADING.exec(lines[i]);
  if (!match) return null;
  const level = match[1].length;
  return {
    node: el(`h${Math.min(level + 2, 6)}`, `md-h md-h${level}`, ...inline(match[2])),
    end: i + 1,
  };
}

function rule(lines, i) {
  return RULE.test(lines[i]) ? { node: el("hr", "md-rule"), end: i + 1 } : null;
}

function quote(lines, i) {
  const inner = [];
  let end = i;
  for (; end < lines.length; end += 1) {
    const match = QUOTE.exec(lines[end]);
    if (!match) break;
    inner.push(match[1]);
  }
  if (!inner.length) return null;
  return { node: el("blockquote", "md-quote", ...blocks(inner)), end };
}

function listBlock(lines, i) {
  return ITEM.test(lines[i]) ? collectList(lines, i) : null;
}

function tableBlock(lines, i) {
  if (!lines[i].includes("|") || i + 1 >= lines.length || !TABLE_RULE.test(lines[i + 1])) {
    return null;
  }
  let end = i + 2;
  while (end < lines.length && lines[end].includes("|") && lines[end].trim()) end += 1;
  return { node: table(lines.slice(i, end)), end };
}

function paragraph(lines, i) {
  let end = i + 1;
  while (end < lines.length && lines[end].trim() && !startsBlock(lines[end], lines[end + 1])) {
    end += 1;
  }
  return { node: el("p", "", ...withBreaks(lines.slice(i, end).join("\n"))), end };
}

const READERS = [fencedCode, heading, rule, quote, listBlock, tableBlock, paragraph];

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    if (!lines[i].trim()) {
      i += 1;
      continue;
    }
    for (const read of READERS) {
      const block = read(lines, i);
      if (block) {
        out.push(block.node);
        i = block.end;
        break;
      }
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
