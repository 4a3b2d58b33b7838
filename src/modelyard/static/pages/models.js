// Models: not built yet.
import { h, render } from "../js/dom.js";

export default {
  mount(root) {
    render(root, h("div", { class: "empty" }, h("h2", {}, "Models"),
      h("p", {}, "This page is not built yet.")));
  },
};
