// Pages of results: where we are, how many per page, previous and next.
import { h, render } from "../../js/dom.js";

const PAGE_SIZES = [25, 50, 100, 200];

export function drawPager(page, box) {
  const { total, pageSize } = page.state;
  const current = page.state.page;
  if (!total) {
    render(box);
    return;
  }
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const first = (current - 1) * pageSize + 1;
  const last = Math.min(total, current * pageSize);
  const size = h(
    "select",
    {
      "aria-label": "Models per page",
      id: "page-size",
      onchange: (ev) => page.query({ pageSize: Number(ev.target.value) }),
    },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === pageSize }, `${n} per page`)),
  );
  render(
    box,
    h("span", { class: "muted", id: "page-info" }, `${first}–${last} of ${total}`),
    h("span", { class: "spacer" }),
    size,
    h(
      "button",
      {
        class: "btn btn-small",
        type: "button",
        id: "page-prev",
        disabled: current <= 1,
        onclick: () => page.query({ page: current - 1 }),
      },
      "‹ Prev",
    ),
    h("span", { class: "small" }, `Page ${current} of ${pages}`),
    h(
      "button",
      {
        class: "btn btn-small",
        type: "button",
        id: "page-next",
        disabled: current >= pages,
        onclick: () => page.query({ page: current + 1 }),
      },
      "Next ›",
    ),
  );
}
