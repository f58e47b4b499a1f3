// The wasmkit replay explorer's front end (an anywidget ES module, no build).
//
// Python (wasmkit/notebook/explorer.py) decides what to show and syncs it as
// plain JSON traits; this module only draws it. The flow table is
// virtualized: it draws the rows in view from `window` (rows from
// `window_start` on) and asks for another window when scrolled past it.
// Keys pressed inside the explorer stop here, so JupyterLab's notebook
// shortcuts (j/k, arrows, a, b, d d ...) never see them.

const ROW_H = 24; // px, one table row (explorer.css: --wk-row-h)
const VISIBLE = 14; // rows in view
const OVERSCAN = 6; // rows drawn above and below the view
const NO_MATHJAX = ["tex2jax_ignore", "mathjax_ignore"];
const BODY_VIEWS = [
  ["diff", "diff"],
  ["text", "text"],
  ["json", "pretty JSON"],
  ["hex", "hex"],
];
const ICONS = {
  failed: "\u2716", // ✖
  reset: "\u2716",
  stalled: "\u23f8", // ⏸
  "local-reply": "\u21a9", // ↩
  modified: "\u25cf", // ●
  "no-response": "\u2205", // ∅
  unchanged: "",
};

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "html") node.innerHTML = value; // HTML built (escaped) in Python
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function tabBar(cls, titles, current, onPick) {
  return h(
    "div",
    { class: `wk-tabbar ${cls}`, role: "tablist" },
    titles.map((title) =>
      h("button", {
        class: "wk-tab",
        role: "tab",
        type: "button",
        "data-tab": title,
        "aria-selected": String(title === current),
        text: title,
        onclick: () => onPick(title),
      }),
    ),
  );
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (an http page, a headless browser): select and copy.
    const area = h("textarea", { class: "wk-offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

// -- the selected flow's panes --------------------------------------------------

function diffLines(text) {
  const kinds = [
    ["+++", "meta"], ["---", "meta"], ["@@", "meta"],
    ["+", "added"], ["-", "removed"], ["~", "changed"],
  ];
  return h(
    "pre",
    { class: "wasmkit-body-diff wk-pre" },
    text.split("\n").map((line) => {
      const kind = (kinds.find(([p]) => line.startsWith(p)) || [null, "same"])[1];
      return h("span", { class: `wk-line wk-line-${kind}`, text: line + "\n" });
    }),
  );
}

function bodySides(body, view) {
  const side = (label, message) => {
    let content;
    if (message === null) content = "(none)";
    else if (view === "json") content = message.json ?? "(not JSON)";
    else if (message.bytes === 0) content = "(empty)";
    else content = message[view];
    return h(
      "div",
      { class: "wk-side" },
      h("div", { class: "wk-side-title", text: `${label} · ${message ? message.bytes : 0} bytes` }),
      h("pre", { class: `wasmkit-body-${view} wk-pre`, text: content }),
    );
  };
  return h("div", { class: "wk-sides" }, side("before", body.before), side("after", body.after));
}

function bodyPane(detail, state, redraw) {
  const bodies = detail.bodies || [];
  if (!bodies.length) return h("p", { text: "No body on either side." });
  const switcher = h(
    "div",
    { class: "wasmkit-body-view wk-switch", role: "group" },
    BODY_VIEWS.map(([view, title]) =>
      h("button", {
        type: "button",
        "data-view": view,
        "aria-pressed": String(state.bodyView === view),
        text: title,
        onclick: () => {
          state.bodyView = view;
          redraw();
        },
      }),
    ),
  );
  return h(
    "div",
    { class: "wasmkit-body", "data-flow": detail.index },
    switcher,
    bodies.map((body) => {
      const size = `${body.before ? body.before.bytes : 0} → ${body.after ? body.after.bytes : 0} bytes`;
      const head = h(
        "p",
        { class: "wk-body-head" },
        h("b", { text: `${body.side} body` }),
        ` (${body.kind}, ${size}) `,
        h("span", {
          class: body.changed ? "wk-badge wk-changed" : "wk-badge",
          text: body.changed ? "changed" : "unchanged",
        }),
      );
      let content;
      if (state.bodyView === "diff") {
        content = body.changed
          ? diffLines(body.diff)
          : h("p", { class: "wk-muted", text: "The filter left this body as it was." });
      } else {
        content = bodySides(body, state.bodyView);
      }
      return h("section", { class: "wk-body-side", "data-side": body.side }, head, content);
    }),
  );
}

function errorPane(detail) {
  const error = detail.error;
  if (!error) return h("p", { class: "wasmkit-error", text: "The filter did not fail on this flow." });
  const frames = error.frames.length
    ? h("ol", { class: "wasmkit-frames", start: "0" }, error.frames.map((f) => h("li", {}, h("code", { text: f }))))
    : h("p", { class: "wk-muted", text: "No wasm backtrace." });
  return h(
    "div",
    { class: "wasmkit-error", "data-flow": detail.index },
    h("p", {}, h("span", { class: "wk-badge wk-failed", text: `\u2716 ${error.kind}` }),
      ` in ${error.callback}` + (error.trap_code ? ` (trap ${error.trap_code})` : "")),
    h("pre", { class: "wk-pre wasmkit-error-message", text: error.message.join("\n") }),
    h("p", { class: "wk-side-title", text: "wasm backtrace, innermost frame first" }),
    frames,
  );
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
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  const state = { bodyView: "diff", pending: null, rendered: [-1, -1] };
  const send = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };

  const status = h("div", { class: "wasmkit-status" });
  const tabs = h("div", { class: "wasmkit-tabs" });
  const panels = {};

  // Flows: controls, the table, the selected flow.
  const filterInput = h("input", {
    type: "text",
    class: "wk-input",
    placeholder: "mitmproxy filter, e.g. ~m POST & ~c 404 (before or after)   [/]",
    "aria-label": "mitmproxy filter expression",
    spellcheck: "false",
  });
  let filterTimer = null;
  const sendFilter = () => {
    clearTimeout(filterTimer);
    if (filterInput.value !== model.get("filter_text")) send({ filter_text: filterInput.value });
  };
  filterInput.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(sendFilter, 250);
  });
  const filterBox = h("div", { class: "wasmkit-filter" }, filterInput);
  const filterMessage = h("span", { class: "wasmkit-filter-message", role: "status" });
  const showSwitch = h("div", { class: "wasmkit-show wk-switch", role: "group", "aria-label": "show" });
  const head = h("div", { class: "wk-head", role: "row" });
  const spacer = h("div", { class: "wk-spacer" });
  const viewport = h("div", { class: "wk-viewport" }, spacer);
  const table = h("div", { class: "wasmkit-flowtable", tabindex: "0", role: "grid", "aria-label": "flows" }, head, viewport);
  const flowTitle = h("div", { class: "wasmkit-flow-title" });
  const unchangedBox = h("input", { type: "checkbox", onchange: () => send({ unchanged: unchangedBox.checked }) });
  const unchanged = h("label", { class: "wasmkit-unchanged" }, unchangedBox, " show unchanged fields");
  const flowTabs = h("div", { class: "wasmkit-flow-tabs" });
  const flowPane = h("div", { class: "wasmkit-flow-pane", tabindex: "-1" });
  panels.Flows = h(
    "div",
    { class: "wk-flows" },
    h("div", { class: "wk-controls" }, filterBox, showSwitch, filterMessage),
    table,
    flowTitle,
    unchanged,
    flowTabs,
    flowPane,
  );

  const body = h("div", { class: "wk-panel" });
  el.replaceChildren(status, tabs, body);

  // -- the table --
  const columns = () => model.get("columns");
  const gridColumns = () =>
    columns().map((c) => ({ index: "4em", method: "5.5em", host: "minmax(11em,1.2fr)", path: "minmax(10em,2fr)",
      status: "7.5em", action: "9.5em", envoy: "5.5em", request: "7.5em", response: "7.5em", body: "5em",
      us: "5.5em", error: "minmax(8em,1fr)" })[c.key] || "6em").join(" ");

  function drawHead() {
    const sortBy = model.get("sort_by"), desc = model.get("sort_desc");
    table.style.setProperty("--wk-cols", gridColumns());
    head.replaceChildren(
      ...columns().map((c) =>
        h("div", {
          class: "wk-cell wk-headcell",
          role: "columnheader",
          "data-key": c.key,
          "aria-sort": c.key === sortBy ? (desc ? "descending" : "ascending") : "none",
          title: `sort by ${c.title}`,
          text: c.title + (c.key === sortBy ? (desc ? " \u25bc" : " \u25b2") : ""),
          onclick: () => send(c.key === sortBy ? { sort_desc: !desc } : { sort_by: c.key, sort_desc: false }),
        }),
      ),
    );
  }

  function windowRows() {
    const start = model.get("window_start");
    const rows = model.get("window");
    return { start, rows, get: (p) => (p >= start && p < start + rows.length ? rows[p - start] : null) };
  }

  function drawRows() {
    const count = model.get("count");
    spacer.style.height = `${count * ROW_H}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(count, first + VISIBLE + 2 * OVERSCAN);
    const win = windowRows();
    const selected = model.get("selected");
    const cells = [];
    let missing = false;
    for (let p = first; p < last; p++) {
      const row = win.get(p);
      if (row === null) {
        missing = true;
        cells.push(h("div", { class: "wk-row wk-row-loading", style: `top:${p * ROW_H}px`, text: "…" }));
        continue;
      }
      const tag = row.tag;
      const node = h(
        "div",
        {
          class: `wk-row wk-row-${tag}` + (row.index === selected ? " wk-selected" : ""),
          role: "row",
          "aria-selected": String(row.index === selected),
          "data-index": row.index,
          "data-position": p,
          style: `top:${p * ROW_H}px`,
          title: row.label,
          onclick: () => {
            send({ selected: row.index });
            table.focus({ preventScroll: true });
          },
        },
        columns().map((c) => {
          let text = row[c.key] === null || row[c.key] === undefined ? "" : String(row[c.key]);
          if (c.key === "action" && ICONS[tag]) text = `${ICONS[tag]} ${text}`;
          if (c.key === "us" && typeof row.us === "number") text = row.us.toFixed(1);
          return h("div", { class: `wk-cell wk-col-${c.key}`, role: "gridcell", text });
        }),
      );
      cells.push(node);
    }
    spacer.replaceChildren(...cells);
    state.rendered = [first, last];
    if (missing) {
      const want = Math.max(0, first - 40);
      if (state.pending !== want && want !== win.start) {
        state.pending = want;
        send({ window_start: want });
      }
    }
  }

  function scrollToSelected() {
    const p = model.get("position");
    if (p < 0) return;
    const top = p * ROW_H, bottom = top + ROW_H;
    if (top < viewport.scrollTop) viewport.scrollTop = top;
    else if (bottom > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = bottom - viewport.clientHeight;
  }

  let frame = null;
  viewport.addEventListener("scroll", () => {
    if (frame === null) frame = requestAnimationFrame(() => { frame = null; drawRows(); });
  });

  // -- controls --
  function drawControls() {
    if (document.activeElement !== filterInput && filterInput.value !== model.get("filter_text")) {
      filterInput.value = model.get("filter_text");
    }
    filterInput.classList.toggle("wk-invalid", model.get("filter_invalid"));
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
      drawRows();
      scrollToSelected();
    }
  }

  // -- keyboard: window capture phase, before JupyterLab's shortcuts --
  const MOVES = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: VISIBLE, PageUp: -VISIBLE };
  function onKey(ev) {
    if (!el.contains(ev.target) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Enter" && ev.shiftKey) return; // run the cell, as ever
    if (ev.target === filterInput) {
      ev.stopPropagation();
      if (ev.key === "Enter" || ev.key === "Escape" || ev.key === "ArrowDown") {
        ev.preventDefault();
        sendFilter();
        table.focus({ preventScroll: true });
      }
      return;
    }
    if (ev.key === "Escape") return; // leave the explorer for JupyterLab
    ev.stopPropagation();
    if (ev.key === "/") {
      ev.preventDefault();
      if (model.get("tab") !== "Flows") send({ tab: "Flows" });
      filterInput.focus();
      filterInput.select();
      return;
    }
    if (!table.contains(ev.target)) return;
    if (ev.key in MOVES) {
      ev.preventDefault();
      model.send({ type: "move", delta: MOVES[ev.key] });
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      model.send({ type: "move", to: ev.key === "Home" ? 0 : -1 });
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      flowPane.focus({ preventScroll: true });
      flowPane.scrollIntoView({ block: "nearest" });
    } else if (ev.key === " ") {
      ev.preventDefault(); // no page scroll
    }
  }
  window.addEventListener("keydown", onKey, true);

  // -- model changes --
  const on = (names, fn) => names.forEach((n) => model.on(`change:${n}`, fn));
  on(["status"], () => { status.innerHTML = model.get("status"); });
  on(["tab", "tabs"], drawTabs);
  on(["columns", "sort_by", "sort_desc"], drawHead);
  on(["window", "window_start", "count", "selected"], () => {
    state.pending = null;
    if (model.get("tab") === "Flows") drawRows();
  });
  on(["position"], () => { scrollToSelected(); drawRows(); });
  on(["filter_text", "filter_message", "filter_invalid", "show", "show_options", "count", "unchanged"], drawControls);
  on(["detail", "flow_tab", "flow_tabs"], drawDetail);
  on(["resources"], () => { delete panels.Resources; if (model.get("tab") === "Resources") drawTabs(); });

  status.innerHTML = model.get("status");
  drawHead();
  drawControls();
  drawDetail();
  drawTabs();
  return () => {
    window.removeEventListener("keydown", onKey, true);
    clearTimeout(filterTimer);
  };
}

export default { render };
