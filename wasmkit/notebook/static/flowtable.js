// What the explorer and the compare view share (plain script, no build).
//
// Python (wasmkit/notebook/_static.py) puts this file ahead of explorer.js
// or compare.js to make each widget's ES module: anywidget loads a module
// from a blob, where relative imports do not resolve. It defines DOM
// helpers, the body and error blocks, the virtualized flow table and the
// keyboard handler; both widgets sync the same table traits (columns,
// sort_by, sort_desc, count, window_start, window, selected, position).

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

// A bar of tab buttons; titles in `marked` carry wk-tab-marked (the compare
// view marks the panes where the two sides differ).
function tabBar(cls, titles, current, onPick, marked = []) {
  return h(
    "div",
    { class: `wk-tabbar ${cls}`, role: "tablist" },
    titles.map((title) =>
      h("button", {
        class: marked.includes(title) ? "wk-tab wk-tab-marked" : "wk-tab",
        role: "tab",
        type: "button",
        "data-tab": title,
        "aria-selected": String(title === current),
        title: marked.includes(title) ? `${title}: differs` : undefined,
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

// -- bodies and failures --------------------------------------------------------

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

function bodySides(body, view, labels) {
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
  return h("div", { class: "wk-sides" }, side(labels[0], body.before), side(labels[1], body.after));
}

// The body pane: per side (request, response) its change and a diff / text /
// pretty JSON / hex view of `before` and `after` (labelled by `labels`).
function bodyPane(detail, state, redraw, { labels = ["before", "after"], same = "The filter left this body as it was." } = {}) {
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
        content = body.changed ? diffLines(body.diff) : h("p", { class: "wk-muted", text: same });
      } else {
        content = bodySides(body, state.bodyView, labels);
      }
      return h("section", { class: "wk-body-side", "data-side": body.side }, head, content);
    }),
  );
}

// A failure: kind, callback, message, and the wasm backtrace as a list of
// frames (innermost first).
function errorBlock(error, index, none = "The filter did not fail on this flow.") {
  if (!error) return h("p", { class: "wasmkit-error", text: none });
  const frames = error.frames.length
    ? h("ol", { class: "wasmkit-frames", start: "0" }, error.frames.map((f) => h("li", {}, h("code", { text: f }))))
    : h("p", { class: "wk-muted", text: "No wasm backtrace." });
  return h(
    "div",
    { class: "wasmkit-error", "data-flow": index },
    h("p", {}, h("span", { class: "wk-badge wk-failed", text: `\u2716 ${error.kind}` }),
      ` in ${error.callback}` + (error.trap_code ? ` (trap ${error.trap_code})` : "")),
    h("pre", { class: "wk-pre wasmkit-error-message", text: error.message.join("\n") }),
    h("p", { class: "wk-side-title", text: "wasm backtrace, innermost frame first" }),
    frames,
  );
}

// -- the virtualized flow table ---------------------------------------------------

// The table of `model`'s listed flows: a header row of sortable columns and
// only the rows in view (plus OVERSCAN) drawn, absolutely placed in a spacer
// as tall as every row; rows outside `window` are asked for by window_start.
//   widths: grid width per column key;  rowClass(row): classes beyond wk-row;
//   cellText(row, key): a cell's text.
function flowTable(model, send, { widths, rowClass, cellText, label = "flows" }) {
  const head = h("div", { class: "wk-head", role: "row" });
  const spacer = h("div", { class: "wk-spacer" });
  const viewport = h("div", { class: "wk-viewport" }, spacer);
  const table = h("div", { class: "wasmkit-flowtable", tabindex: "0", role: "grid", "aria-label": label }, head, viewport);
  const state = { pending: null };
  const columns = () => model.get("columns");
  const gridColumns = () => columns().map((c) => widths[c.key] || "6em").join(" ");

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
      const node = h(
        "div",
        {
          class: `wk-row ${rowClass(row)}` + (row.index === selected ? " wk-selected" : ""),
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
        columns().map((c) =>
          h("div", { class: `wk-cell wk-col-${c.key}`, role: "gridcell", text: cellText(row, c.key) }),
        ),
      );
      cells.push(node);
    }
    spacer.replaceChildren(...cells);
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
  return { table, drawHead, drawRows, scrollToSelected, arrived: () => { state.pending = null; } };
}

// -- the keyboard -----------------------------------------------------------------

// A keydown handler for the window's capture phase, before JupyterLab's
// shortcuts: keys pressed inside `el` stop there (j/k, arrows, a, b, d d ...
// never reach the notebook), except Shift+Enter (run the cell) and Escape
// (leave the widget). In the table ↑/↓ j/k Page Up/Down Home End move the
// selection (a "move" message to Python), Enter calls onEnter; "/" focuses
// the filter box (after onSlash), and Enter, Escape or ↓ in it go back to
// the table. onMove runs as a move is sent (scroll the selected row back into
// view: a move that keeps the selection changes nothing Python sends).
function tableKeys({ el, model, table, filterInput, sendFilter, onSlash = () => {}, onEnter = () => {}, onMove = () => {} }) {
  const MOVES = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: VISIBLE, PageUp: -VISIBLE };
  return function onKey(ev) {
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
    if (ev.key === "Escape") return; // leave the widget for JupyterLab
    ev.stopPropagation();
    if (ev.key === "/") {
      ev.preventDefault();
      onSlash();
      filterInput.focus();
      filterInput.select();
      return;
    }
    if (!table.contains(ev.target)) return;
    if (ev.key in MOVES) {
      ev.preventDefault();
      onMove();
      model.send({ type: "move", delta: MOVES[ev.key] });
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      onMove();
      model.send({ type: "move", to: ev.key === "Home" ? 0 : -1 });
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      onEnter();
    } else if (ev.key === " ") {
      ev.preventDefault(); // no page scroll
    }
  };
}

// The mitmproxy filter box: typing sends filter_text after a pause.
function filterBox(model, send, placeholder) {
  const input = h("input", {
    type: "text",
    class: "wk-input",
    placeholder,
    "aria-label": "mitmproxy filter expression",
    spellcheck: "false",
  });
  let timer = null;
  const flush = () => {
    clearTimeout(timer);
    if (input.value !== model.get("filter_text")) send({ filter_text: input.value });
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(flush, 250);
  });
  const box = h("div", { class: "wasmkit-filter" }, input);
  const sync = () => {
    if (document.activeElement !== input && input.value !== model.get("filter_text")) {
      input.value = model.get("filter_text");
    }
    input.classList.toggle("wk-invalid", model.get("filter_invalid"));
  };
  return { box, input, flush, sync, stop: () => clearTimeout(timer) };
}
