// The wasmkit compare view's front end (an anywidget ES module, no build).
//
// Python (wasmkit/notebook/compare_view.py) decides what to show and syncs
// it as plain JSON traits; this module only draws it, with the explorer's
// pieces from flowtable.js (which Python puts ahead of this file): the
// virtualized flow table, the keyboard that stops at the widget, the body
// views and the backtrace list. The two sides are labelled with the names in
// `names` (a, then b).

const SIDE_ICONS = { failed: "\u2716", "local reply": "\u21a9", missing: "\u2205" }; // ✖ ↩ ∅

function sidesOf(names, a, b) {
  return h(
    "div",
    { class: "wk-sides" },
    h("div", { class: "wk-side", "data-side": "a" }, h("div", { class: "wk-side-title", text: names[0] }), a),
    h("div", { class: "wk-side", "data-side": "b" }, h("div", { class: "wk-side-title", text: names[1] }), b),
  );
}

function errorsPane(detail) {
  const [a, b] = detail.errors || [null, null];
  const names = detail.names;
  return h(
    "div",
    { class: "wasmkit-compare-errors", "data-flow": detail.index },
    sidesOf(
      names,
      errorBlock(a, detail.index, `${names[0]}: the filter did not fail on this flow.`),
      errorBlock(b, detail.index, `${names[1]}: the filter did not fail on this flow.`),
    ),
  );
}

function render({ model, el }) {
  el.classList.add("wasmkit-compare", "wk-root", ...NO_MATHJAX);
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  const state = { bodyView: "diff" };
  const send = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };

  const status = h("div", { class: "wasmkit-status" });
  const filter = filterBox(model, send, "mitmproxy filter, as captured or after either filter, e.g. ~c 403   [/]");
  const filterMessage = h("span", { class: "wasmkit-filter-message", role: "status" });
  const showSwitch = h("div", { class: "wasmkit-show wk-switch", role: "group", "aria-label": "show" });
  // The status column as wide as its title, which names both sides.
  const statusTitle = (model.get("columns").find((c) => c.key === "status") || { title: "" }).title;
  const grid = flowTable(model, send, {
    widths: { index: "4em", method: "5.5em", host: "minmax(10.5em,1fr)", path: "minmax(8em,1.5fr)",
      status: `${Math.max(8, statusTitle.length * 0.6 + 2).toFixed(1)}em`, a: "9em", b: "9em",
      fields: "minmax(14em,3fr)" },
    rowClass: (row) => `wk-row-${row.tag}`,
    cellText: (row, key) => {
      const text = row[key] === null || row[key] === undefined ? "" : String(row[key]);
      if ((key === "a" || key === "b") && SIDE_ICONS[text]) return `${SIDE_ICONS[text]} ${text}`;
      return text;
    },
    label: "compared flows",
  });
  const flowTitle = h("div", { class: "wasmkit-flow-title" });
  const flowTabs = h("div", { class: "wasmkit-flow-tabs" });
  const flowPane = h("div", { class: "wasmkit-flow-pane", tabindex: "-1" });
  el.replaceChildren(
    status,
    h("div", { class: "wk-controls" }, filter.box, showSwitch, filterMessage),
    grid.table,
    flowTitle,
    flowTabs,
    flowPane,
  );

  function drawControls() {
    filter.sync();
    const count = model.get("count"), total = model.get("total");
    filterMessage.textContent = model.get("filter_message") || `${count} of ${total} flows listed`;
    filterMessage.classList.toggle("wk-error-text", model.get("filter_invalid"));
    const show = model.get("show");
    showSwitch.replaceChildren(
      ...model.get("show_options").map((opt) =>
        h("button", { type: "button", "aria-pressed": String(opt === show), text: opt, onclick: () => send({ show: opt }) }),
      ),
    );
  }

  function drawDetail() {
    const detail = model.get("detail") || {};
    const fields = detail.fields || [];
    flowTitle.replaceChildren(
      h("b", { text: detail.title || "" }),
      fields.length
        ? h("div", { class: "wk-note wasmkit-differs" }, "differs in: ",
            ...fields.map((f) => h("span", { class: "wk-badge wk-changed", "data-field": f, text: f })))
        : null,
    );
    const current = model.get("flow_tab");
    flowTabs.replaceChildren(
      tabBar("wk-flow-tabbar", model.get("flow_tabs"), current, (t) => send({ flow_tab: t }), detail.marked || []),
    );
    flowPane.setAttribute("data-tab", current);
    const names = detail.names || model.get("names");
    if (detail.index === undefined || detail.index < 0) {
      flowPane.replaceChildren(h("p", { text: detail.title || "No flow matches." }));
    } else if (current === "Bodies") {
      flowPane.replaceChildren(
        bodyPane(detail, state, drawDetail, { labels: names, same: `The same under ${names[0]} and ${names[1]}.` }),
      );
    } else if (current === "Error") {
      flowPane.replaceChildren(errorsPane(detail));
    } else {
      flowPane.replaceChildren(h("div", { html: (detail.panes || {})[current] || "" }));
    }
  }

  const onKey = tableKeys({
    el,
    model,
    table: grid.table,
    filterInput: filter.input,
    sendFilter: filter.flush,
    onEnter: () => {
      flowPane.focus({ preventScroll: true });
      flowPane.scrollIntoView({ block: "nearest" });
    },
    onMove: grid.scrollToSelected,
  });
  window.addEventListener("keydown", onKey, true);

  const on = (names, fn) => names.forEach((n) => model.on(`change:${n}`, fn));
  on(["status"], () => { status.innerHTML = model.get("status"); });
  on(["columns", "sort_by", "sort_desc"], grid.drawHead);
  on(["window", "window_start", "count", "selected"], () => {
    grid.arrived();
    grid.drawRows();
  });
  on(["position"], () => { grid.scrollToSelected(); grid.drawRows(); });
  on(["filter_text", "filter_message", "filter_invalid", "show", "show_options", "count"], drawControls);
  on(["detail", "flow_tab", "flow_tabs"], drawDetail);

  status.innerHTML = model.get("status");
  grid.drawHead();
  drawControls();
  drawDetail();
  grid.drawRows();
  grid.scrollToSelected();
  return () => {
    window.removeEventListener("keydown", onKey, true);
    filter.stop();
  };
}

export default { render };
