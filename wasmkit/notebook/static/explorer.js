// The wasmkit replay explorer's front end (an anywidget ES module, no build).
//
// Python (wasmkit/notebook/explorer.py) decides what to show and syncs it as
// plain JSON traits; this module only draws it. The flow table is
// virtualized: it draws the rows in view from `window` (rows from
// `window_start` on) and asks for another window when scrolled past it.
// Keys pressed inside the explorer stop here, so JupyterLab's notebook
// shortcuts (j/k, arrows, a, b, d d ...) never see them. The table, the
// keyboard, the body and error blocks and h() come from flowtable.js, which
// Python puts ahead of this file.

const ICONS = {
  failed: "\u2716", // ✖
  reset: "\u2716",
  stalled: "\u23f8", // ⏸
  "local-reply": "\u21a9", // ↩
  modified: "\u25cf", // ●
  "no-response": "\u2205", // ∅
  unchanged: "",
};

// -- the selected flow's panes --------------------------------------------------

function errorPane(detail) {
  return errorBlock(detail.error, detail.index);
}

function curlPane(detail) {
  const block = (side, title, text) => {
    const status = h("span", { class: "wk-muted wasmkit-copied", role: "status" });
    const button = h("button", {
      type: "button",
      class: "wasmkit-copy",
      "data-side": side,
      text: `Copy curl (${side})`,
      disabled: text === null,
      onclick: async () => {
        status.textContent = (await copyText(text)) ? "copied" : "select the text to copy it";
      },
    });
    return h(
      "section",
      { class: "wk-curl" },
      h("p", {}, h("b", { text: title }), " ", button, " ", status),
      h("pre", { class: "wk-pre wasmkit-curl", "data-side": side, text: text ?? "The filter held the request: nothing went upstream." }),
    );
  };
  const curl = detail.curl || {};
  return h(
    "div",
    { "data-flow": detail.index },
    block("before", "before the filter (the request as captured)", curl.before ?? null),
    block("after", "after the filter (the request as forwarded upstream)", curl.after ?? null),
  );
}

// -- the Resources tab ----------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value !== "number") return String(value);
  if (Math.abs(value) >= 1e6) return value.toExponential(2);
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(1);
}

function plot(series, onPick) {
  const W = 640, H = 130, L = 56, R = 8, T = 8, B = 20;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "wk-plot-svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${series.title} per flow`);
  const n = series.values.length;
  const lo = Math.min(0, series.min), hi = series.max > lo ? series.max : lo + 1;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "wk-axis" });
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "wk-axis" });
  add("text", { x: L - 4, y: T + 8, class: "wk-tick", "text-anchor": "end" }, fmt(hi));
  add("text", { x: L - 4, y: H - B, class: "wk-tick", "text-anchor": "end" }, fmt(lo));
  add("text", { x: L, y: H - 4, class: "wk-tick" }, `#${series.flows[0] ?? ""}`);
  add("text", { x: W - R, y: H - 4, class: "wk-tick", "text-anchor": "end" }, `#${series.flows[n - 1] ?? ""}`);
  let run = [];
  const runs = [];
  series.values.forEach((v, i) => {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (run.length) runs.push(run);
  for (const points of runs) {
    if (points.length === 1) {
      const [px, py] = points[0].split(",");
      add("circle", { cx: px, cy: py, r: 2.5, class: "wk-dot" });
    } else add("polyline", { points: points.join(" "), class: "wk-line-series" });
  }
  const cursor = add("line", { x1: -10, y1: T, x2: -10, y2: H - B, class: "wk-cursor" });
  const readout = h("span", { class: "wk-readout wk-muted" });
  const at = (ev) => {
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    return Math.max(0, Math.min(n - 1, Math.round(((px - L) / (W - L - R)) * (n - 1))));
  };
  svg.addEventListener("mousemove", (ev) => {
    const i = at(ev);
    cursor.setAttribute("x1", x(i));
    cursor.setAttribute("x2", x(i));
    readout.textContent = `flow #${series.flows[i]}: ${fmt(series.values[i])} ${series.unit}`;
  });
  svg.addEventListener("click", (ev) => onPick(series.flows[at(ev)]));
  return h(
    "figure",
    { class: "wasmkit-plot", "data-series": series.key },
    h("figcaption", {},
      h("b", { text: series.title }),
      ` · min ${fmt(series.min)}, max ${fmt(series.max)} ${series.unit}` +
        (series.key === "memory_bytes" ? "" : `, total ${fmt(series.total)}`),
      " ", readout),
    svg,
  );
}

function resourcesPane(res, onPick) {
  if (!res || !res.flows) return h("p", { text: "No flows were replayed." });
  const hasFuel = res.series.some((s) => s.key === "fuel");
  const hasMemory = res.series.some((s) => s.key === "memory_bytes");
  return h(
    "div",
    { class: "wasmkit-resources" },
    res.leak ? h("p", { class: "wasmkit-leak wk-warn", role: "note", text: `\u26a0 ${res.leak}` }) : null,
    h("p", { class: "wk-muted", text:
      `${res.flows} flows; each plot has the flows in capture order (the largest value of each run ` +
      "of flows when there are many). Click a point to open the flow." +
      (hasFuel ? "" : " Fuel is measured with Limits(fuel=...).") +
      (hasMemory ? "" : " Memory is measured in this process only (not for worker or Envoy flows).") }),
    res.series.map((s) => plot(s, onPick)),
    h("p", {}, h("b", { text: "time per callback" })),
    h("table", { class: "wasmkit-callbacks wk-table" },
      h("thead", {}, h("tr", {}, ["callback", "flows", "total µs", "mean µs", "max µs"].map((t) => h("th", { text: t })))),
      h("tbody", {}, res.callbacks.map((c) =>
        h("tr", {}, [c.callback, c.flows, c.total_us, c.mean_us, c.max_us].map((v) => h("td", { text: fmt(v) })))))),
  );
}

// -- the widget -----------------------------------------------------------------

function render({ model, el }) {
  el.classList.add("wasmkit-explorer", ...NO_MATHJAX);
  el.classList.add("wk-root"); // the styles explorer.css shares with the compare view
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  const state = { bodyView: "diff" };
  const send = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };

  const status = h("div", { class: "wasmkit-status" });
  const tabs = h("div", { class: "wasmkit-tabs" });
  const panels = {};

  // Flows: controls, the table, the selected flow.
  const filter = filterBox(model, send, "mitmproxy filter, e.g. ~m POST & ~c 404 (before or after)   [/]");
  const filterMessage = h("span", { class: "wasmkit-filter-message", role: "status" });
  const showSwitch = h("div", { class: "wasmkit-show wk-switch", role: "group", "aria-label": "show" });
  const grid = flowTable(model, send, {
    widths: { index: "4em", method: "5.5em", host: "minmax(11em,1.2fr)", path: "minmax(10em,2fr)",
      status: "7.5em", action: "9.5em", envoy: "5.5em", request: "7.5em", response: "7.5em", body: "5em",
      us: "5.5em", error: "minmax(8em,1fr)" },
    rowClass: (row) => `wk-row-${row.tag}`,
    cellText: (row, key) => {
      let text = row[key] === null || row[key] === undefined ? "" : String(row[key]);
      if (key === "action" && ICONS[row.tag]) text = `${ICONS[row.tag]} ${text}`;
      if (key === "us" && typeof row.us === "number") text = row.us.toFixed(1);
      return text;
    },
  });
  const table = grid.table;
  const flowTitle = h("div", { class: "wasmkit-flow-title" });
  const unchangedBox = h("input", { type: "checkbox", onchange: () => send({ unchanged: unchangedBox.checked }) });
  const unchanged = h("label", { class: "wasmkit-unchanged" }, unchangedBox, " show unchanged fields");
  const flowTabs = h("div", { class: "wasmkit-flow-tabs" });
  const flowPane = h("div", { class: "wasmkit-flow-pane", tabindex: "-1" });
  panels.Flows = h(
    "div",
    { class: "wk-flows" },
    h("div", { class: "wk-controls" }, filter.box, showSwitch, filterMessage),
    table,
    flowTitle,
    unchanged,
    flowTabs,
    flowPane,
  );

  const body = h("div", { class: "wk-panel" });
  el.replaceChildren(status, tabs, body);

  // -- controls --
  function drawControls() {
    filter.sync();
    filterMessage.textContent = model.get("filter_message") || `${model.get("count")} of ${model.get("total")} flows`;
    filterMessage.classList.toggle("wk-error-text", model.get("filter_invalid"));
    const show = model.get("show");
    showSwitch.replaceChildren(
      ...model.get("show_options").map((opt) =>
        h("button", { type: "button", "aria-pressed": String(opt === show), text: opt, onclick: () => send({ show: opt }) }),
      ),
    );
    unchangedBox.checked = model.get("unchanged");
  }

  // -- the selected flow --
  function drawDetail() {
    const detail = model.get("detail") || {};
    const notes = detail.notes || [];
    flowTitle.replaceChildren(
      h("b", { text: detail.title || "" }),
      ...notes.map((n) => h("div", { class: "wk-note", text: n })),
    );
    const current = model.get("flow_tab");
    flowTabs.replaceChildren(tabBar("wk-flow-tabbar", model.get("flow_tabs"), current, (t) => send({ flow_tab: t })));
    flowPane.setAttribute("data-tab", current);
    if (detail.index === undefined || detail.index < 0) {
      flowPane.replaceChildren(h("p", { text: "No flow matches." }));
    } else if (current === "Body") {
      flowPane.replaceChildren(bodyPane(detail, state, drawDetail));
    } else if (current === "Error") {
      flowPane.replaceChildren(errorPane(detail));
    } else if (current === "curl") {
      flowPane.replaceChildren(curlPane(detail));
    } else {
      flowPane.replaceChildren(h("div", { html: (detail.panes || {})[current] || "" }));
    }
  }

  // -- tabs --
  function drawTabs() {
    const current = model.get("tab");
    tabs.replaceChildren(tabBar("wk-main-tabbar", model.get("tabs"), current, (t) => send({ tab: t })));
    let panel = panels[current];
    if (!panel && current === "Resources") {
      panel = panels.Resources = resourcesPane(model.get("resources"), (index) => send({ selected: index, tab: "Flows" }));
    }
    if (!panel) panel = panels[current] = h("div", { class: `wk-page wk-page-${current.toLowerCase()}`, html: model.get("pages")[current] || "" });
    body.replaceChildren(panel);
    if (current === "Flows") {
      grid.drawRows();
      grid.scrollToSelected();
    }
  }

  // -- keyboard: window capture phase, before JupyterLab's shortcuts --
  const onKey = tableKeys({
    el,
    model,
    table,
    filterInput: filter.input,
    sendFilter: filter.flush,
    onSlash: () => { if (model.get("tab") !== "Flows") send({ tab: "Flows" }); },
    onEnter: () => {
      flowPane.focus({ preventScroll: true });
      flowPane.scrollIntoView({ block: "nearest" });
    },
    onMove: grid.scrollToSelected,
  });
  window.addEventListener("keydown", onKey, true);

  // -- model changes --
  const on = (names, fn) => names.forEach((n) => model.on(`change:${n}`, fn));
  on(["status"], () => { status.innerHTML = model.get("status"); });
  on(["tab", "tabs"], drawTabs);
  on(["columns", "sort_by", "sort_desc"], grid.drawHead);
  on(["window", "window_start", "count", "selected"], () => {
    grid.arrived();
    if (model.get("tab") === "Flows") grid.drawRows();
  });
  on(["position"], () => { grid.scrollToSelected(); grid.drawRows(); });
  on(["filter_text", "filter_message", "filter_invalid", "show", "show_options", "count", "unchanged"], drawControls);
  on(["detail", "flow_tab", "flow_tabs"], drawDetail);
  on(["resources"], () => { delete panels.Resources; if (model.get("tab") === "Resources") drawTabs(); });

  status.innerHTML = model.get("status");
  grid.drawHead();
  drawControls();
  drawDetail();
  drawTabs();
  return () => {
    window.removeEventListener("keydown", onKey, true);
    filter.stop();
  };
}

export default { render };
