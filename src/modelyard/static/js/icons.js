// Line icons drawn with SVG (no icon font or emoji needed).

const SVG = "http://www.w3.org/2000/svg";
const PATHS = {
  plus: ["M12 5v14", "M5 12h14"],
  pencil: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6", "M10 11v6", "M14 11v6"],
  menu: ["M3 6h18", "M3 12h18", "M3 18h18"],
  sliders: [
    ...["M4 21v-7", "M4 10V3", "M12 21v-9", "M12 8V3", "M20 21v-5", "M20 12V3"],
    ...["M1 14h6", "M9 8h6", "M17 16h6"],
  ],
  send: ["M12 19V5", "M5 12l7-7 7 7"],
  stop: ["M7 7h10v10H7z"],
  copy: ["M9 9h11v11H9z", "M5 15H4V4h11v1"],
  redo: ["M21 12a9 9 0 1 1-2.6-6.4L21 8", "M21 3v5h-5"],
  chat: ["M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"],
};
const ATTRIBUTES = {
  viewBox: "0 0 24 24",
  fill: "none",
  stroke: "currentColor",
  "stroke-width": "2",
  "stroke-linecap": "round",
  "stroke-linejoin": "round",
  "aria-hidden": "true",
  class: "icon",
};

export function icon(name, size = 16) {
  const svg = document.createElementNS(SVG, "svg");
  for (const [k, v] of Object.entries({ ...ATTRIBUTES, width: size, height: size })) {
    svg.setAttribute(k, String(v));
  }
  for (const d of PATHS[name]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}
