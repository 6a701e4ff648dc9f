/* lstm-viz time explorer: steps through one layer-direction's trace in the page.
 *
 * window.LstmExplorer.mount(root, options) draws into `root` and returns a controller:
 *   update(bytes)   a window payload (lstm_viz/explorer/payload.py: b"LVX1", header length, JSON header,
 *                   float32 arrays); the same payload twice is a no-op
 *   focus(unit)     the small unit payload: the view Python holds (t, unit, batch) and the inspected
 *                   unit's gate terms (W x_t, W h_prev, bias) over the window
 *   destroy()
 * options.report(view, urgent) tells the host where the user is: {t, unit, batch}. It is called when stepping
 * pauses (debounced), on a cell click, and at once when t needs the next window.
 *
 * Every number shown comes from the payloads; the page only indexes them. Labels from users (text
 * characters, time labels) reach Plotly and the DOM escaped or as text nodes, never as markup.
 */
(function () {
  "use strict";

  const QUANTITIES = {
    f: { words: "forget gate", symbol: "f<sub>t</sub>", axis: "coloraxis" },
    i: { words: "input gate", symbol: "i<sub>t</sub>", axis: "coloraxis" },
    o: { words: "output gate", symbol: "o<sub>t</sub>", axis: "coloraxis" },
    g: { words: "candidate", symbol: "g<sub>t</sub> (C̃<sub>t</sub>)", axis: "coloraxis2" },
    c: { words: "cell state", symbol: "C<sub>t</sub>", axis: "coloraxis3" },
    h: { words: "hidden state", symbol: "h<sub>t</sub>", axis: "coloraxis2" },
  };
  // Bands of a figure in px (figures.py's): the title, a panel's title, x tick labels, the x axis title.
  const BAND = { title: 30, panel: 20, ticks: 22, axisTitle: 20 };
  const NARROW_PX = 600; // below this width: two heatmap columns, colour bars below, fewer ticks
  const SPEEDS = [1, 2, 4, 8, 16, 30]; // steps per second
  const REPORT_AFTER_MS = 350; // Python learns t this long after the user stops stepping
  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  // --- the payload -----------------------------------------------------------------------------------

  function decode(bytes) {
    const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const copy = u8.slice(); // own, aligned buffer: Streamlit's view may start at any byte offset
    const view = new DataView(copy.buffer);
    const magic = String.fromCharCode(copy[0], copy[1], copy[2], copy[3]);
    if (magic !== "LVX1") throw new Error("not an lstm-viz explorer payload");
    const n = view.getUint32(4, true);
    const header = JSON.parse(new TextDecoder().decode(copy.subarray(8, 8 + n)));
    const arrays = {};
    for (const [name, spec] of Object.entries(header.arrays)) {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      arrays[name] = new Float32Array(copy.buffer, 8 + n + spec.offset, count);
    }
    return { header, arrays };
  }

  function floats(base64) {
    const raw = atob(base64);
    const u8 = new Uint8Array(raw.length);
    for (let k = 0; k < raw.length; k++) u8[k] = raw.charCodeAt(k);
    return new Float32Array(u8.buffer);
  }

  /* [start, stop) holding t, at most `budget` steps, moving in half-window strides: figures.time_window. */
  function timeWindow(seqLen, t, budget) {
    const width = Math.max(1, Math.min(seqLen, budget));
    const stride = Math.max(1, Math.floor(width / 2));
    const start = Math.min(Math.max(0, Math.floor(t / stride) * stride - Math.floor(stride / 2)), seqLen - width);
    return [start, start + width];
  }

  // Plotly reads a subset of HTML in titles, ticks and hover text: user strings go in with <, > and & escaped.
  function escapeHtml(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // A label inside a hover template: escaped, and its "%{" kept from starting a template field.
  function literal(text) {
    return escapeHtml(text).replace(/%\{/g, "%\u200b{");
  }

  /* The one tooltip format (figures.hover_text): "forget gate f · t=5 · batch 0 · unit 3 · layer 1 · reverse",
   * then the value. On a time axis t is "t=%{x:d}": a bare %{x} prints the axis's tick label, and a toy task's
   * labels already read "t=5". */
  function hoverText(what, time, batch, index, where, value) {
    const parts = [what, time, batch == null ? null : `batch ${batch}`, index, where || null];
    return parts.filter((p) => p != null).join(" · ") + `<br>${value || "value %{z:.4f}"}<extra></extra>`;
  }

  /* "t=5", with the step's label when it says more than that: "t=0 (store)" (figures.step_label). */
  function stepLabel(t, label) {
    const more = label != null && label !== String(t) && label !== `t=${t}`;
    return `t=${t}` + (more ? ` (${literal(label)})` : "");
  }

  /* Paper-fraction domains, top to bottom, of panels given as [px free above, px tall], and the plotting area's
   * height in px (figures.vertical_domains). */
  function verticalDomains(panels) {
    const area = panels.reduce((sum, [above, tall]) => sum + above + tall, 0);
    let y = 0;
    const domains = panels.map(([above, tall]) => {
      y += above;
      const domain = [1 - (y + tall) / area, 1 - y / area];
      y += tall;
      return domain;
    });
    return { domains, area };
  }

  /* A readable colour bar (figures.colour_bar): 16 px thick, `len` px long, 11 px ticks, its title clear of them. */
  function colourBar(text, len, place) {
    return { title: { text, side: "top", font: { size: 11 } }, thickness: 16,
             len, lenmode: "pixels", tickfont: { size: 11 }, nticks: 5, ticks: "outside", ticklen: 3, outlinewidth: 0,
             ...place };
  }

  /* Tick labels for steps [start, stop): every k-th, so that they sit side by side unrotated in `width` px. */
  function timeTicks(labels, start, stop, width) {
    const shown = labels.map(escapeHtml), longest = Math.max(1, ...shown.map((l) => l.length));
    const every = Math.max(1, Math.ceil(shown.length * (7 * longest + 10) / Math.max(width, 1)));
    const ticks = [], last = shown.length - 1;
    for (let k = 0; k <= last; k += every) ticks.push(k);
    if (ticks[ticks.length - 1] !== last) { // the last step too ("recall"), in place of a neighbour too close to it
      if (last - ticks[ticks.length - 1] < every * 0.8 && ticks.length > 1) ticks.pop();
      ticks.push(last);
    }
    return { tickvals: ticks.map((k) => start + k), ticktext: ticks.map((k) => shown[k]), tickangle: 0 };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // --- colour: the figures' scales, for the cell diagram's nodes --------------------------------------

  function parseColour(text) {
    if (text.startsWith("#")) {
      const v = parseInt(text.slice(1), 16);
      return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
    }
    return text.replace(/[^\d,.]/g, "").split(",").slice(0, 3).map(Number);
  }

  function colourAt(scale, value, lo, hi) {
    if (!Number.isFinite(value)) return "#ddd";
    const u = Math.min(1, Math.max(0, (value - lo) / (hi - lo || 1)));
    for (let k = 1; k < scale.length; k++) {
      if (u <= scale[k][0]) {
        const [u0, c0] = scale[k - 1], [u1, c1] = scale[k];
        const w = (u - u0) / (u1 - u0 || 1), a = parseColour(c0), b = parseColour(c1);
        return `rgb(${a.map((x, j) => Math.round(x + w * (b[j] - x))).join(",")})`;
      }
    }
    return scale[scale.length - 1][1];
  }

  function inkFor(fill) {
    const [r, g, b] = parseColour(fill.startsWith("rgb") || fill.startsWith("#") ? fill : "#ffffff");
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111" : "#fff";
  }

  function fmt(value) {
    return Number.isFinite(value) ? value.toFixed(4).replace("-", "−") : "—";
  }

  function factor(value) { // a negative factor in a product, parenthesised: 0.6·(−0.05)
    return value < 0 ? `(${fmt(value)})` : fmt(value);
  }

  function sum(values) { // "a + b − c": each term's sign as the operator
    return values.map((v, k) => (k === 0 ? fmt(v) : (v < 0 ? " − " : " + ") + fmt(Math.abs(v)))).join("");
  }

  // --- the explorer ----------------------------------------------------------------------------------------

  class Explorer {
    constructor(root, options) {
      this.options = options || {};
      this.root = root;
      this.t = 0; this.unit = 0; this.batch = 0;
      this.playing = false; this.speed = 4;
      this.fromHost = null; this.reported = null; this.requestedStart = null;
      this.sent = null; // reports sent to the host, numbered: its unit payload says which one it has seen last
      this.terms = null; this.pendingFocus = null; this.displayWindow = null;
      this.build();
      this.onKey = (event) => this.key(event);
      document.addEventListener("keydown", this.onKey);
      // Laid out in px for the width drawn at: a new width (a rotated phone, a resized window) redraws both.
      this.onResize = () => {
        clearTimeout(this.resizeTimer);
        this.resizeTimer = setTimeout(() => this.resized(), 150);
      };
      window.addEventListener("resize", this.onResize);
    }

    resized() {
      if (!this.header || Math.abs(this.root.clientWidth - (this.drawnWidth || 0)) < 24) return;
      this.drawStep(true); this.drawTime(true);
    }

    build() {
      const q = (text, handler, title) => el("button", { type: "button", class: "lvx-btn", title, onclick: handler,
                                                         text });
      this.firstBtn = q("« First", () => this.go(this.firstStep()), "first step in processing order (Home)");
      this.prevBtn = q("◀ Prev", () => this.step(-1), "previous step in processing order (←)");
      this.playBtn = q("▶ Play", () => this.togglePlay(), "play or pause (P)");
      this.nextBtn = q("Next ▶", () => this.step(1), "next step in processing order (→)");
      this.lastBtn = q("Last »", () => this.go(this.lastStep()), "last step in processing order (End)");
      this.slider = el("input", { type: "range", min: 0, max: 0, value: 0, class: "lvx-slider",
                                  "aria-label": "timestep t", oninput: () => this.go(Number(this.slider.value)) });
      this.speedSelect = el("select", { class: "lvx-speed", "aria-label": "play speed",
                                        onchange: () => { this.speed = Number(this.speedSelect.value); this.restartPlay(); } });
      for (const s of SPEEDS) this.speedSelect.append(el("option", { value: s, text: `${s} steps/s` }));
      this.speedSelect.value = String(this.speed);
      this.readout = el("span", { class: "lvx-readout", "data-testid": "lvx-readout" });
      this.where = el("div", { class: "lvx-where" });
      this.stepDiv = el("div", { class: "lvx-step", "data-testid": "lvx-step" });
      this.cellBox = el("div", { class: "lvx-cell", "data-testid": "lvx-cell" });
      this.timeDiv = el("div", { class: "lvx-time", "data-testid": "lvx-time" });
      // Step t's frame over the time figure: an element moved on each step (moving a Plotly shape would
      // recalculate the whole figure, ~40 ms a step).
      this.marker = el("div", { class: "lvx-marker", "data-testid": "lvx-marker" });
      this.timeBox = el("div", { class: "lvx-time-box" }, this.timeDiv, this.marker);
      const bar = el("div", { class: "lvx-bar" }, this.firstBtn, this.prevBtn, this.playBtn, this.nextBtn,
                     this.lastBtn, this.slider, this.speedSelect);
      this.box = el("div", { class: "lvx", "data-testid": "lvx" }, bar,
                    el("div", { class: "lvx-line" }, this.readout, this.where),
                    el("div", { class: "lvx-main" }, this.stepDiv, this.cellBox), this.timeBox);
      this.root.append(this.box);
    }

    // --- data in ---

    update(bytes) {
      const { header, arrays } = decode(bytes);
      if (this.header && this.header.id === header.id) return false;
      const first = !this.header;
      const sameLayer = this.header && this.header.layer === header.layer &&
        this.header.direction === header.direction && this.header.seq_len === header.seq_len;
      this.header = header; this.arrays = arrays; this.requestedStart = null;
      this.terms = null; this.displayWindow = null;
      if (!sameLayer && !first) this.fromHost = null;
      const wanted = this.pendingT != null && this.pendingT >= header.start && this.pendingT < header.stop;
      this.t = Math.min(Math.max(wanted ? this.pendingT : this.t, header.start), header.stop - 1);
      this.pendingT = null;
      this.unit = Math.min(this.unit, header.hidden - 1);
      this.batch = Math.min(this.batch, header.batch - 1);
      this.slider.max = String(header.seq_len - 1);
      if (this.pendingFocus) { const pending = this.pendingFocus; this.pendingFocus = null; this.focus(pending); }
      this.drawStep(true); this.drawTime(true); this.drawCell(); this.drawReadout();
      return true;
    }

    focus(unitPayload) {
      const p = typeof unitPayload === "string" ? JSON.parse(unitPayload) : unitPayload;
      if (!p) return;
      if (!this.header || p.window_id !== this.header.id) { this.pendingFocus = p; return; }
      // Follow a value Python changed (a link, the sidebar), never one it echoes back from this page: while
      // Python has not seen this page's latest report its view is older than the page's, so it is not applied.
      const caughtUp = this.sent === null || (p.seq || 0) === this.sent;
      if (this.sent === null) this.sent = p.seq || 0;
      const base = this.reported || this.fromHost;
      const changed = (name) => caughtUp && p[name] !== undefined && (!base || p[name] !== base[name]);
      const unitBefore = this.unit, batchBefore = this.batch;
      if (changed("t")) this.t = Math.min(Math.max(p.t, this.header.start), this.header.stop - 1);
      if (changed("unit")) this.unit = Math.min(p.unit, this.header.hidden - 1);
      if (changed("batch")) this.batch = Math.min(p.batch, this.header.batch - 1);
      this.fromHost = { t: p.t, unit: p.unit, batch: p.batch };
      this.terms = p.unit === this.unit && p.batch === this.batch && p.terms ? p : this.terms;
      if (unitBefore !== this.unit) this.drawUnitBoxes();
      this.drawStep(false);
      if (batchBefore !== this.batch) this.drawTime(true); else this.drawTime(false);
      this.drawCell(); this.drawReadout();
    }

    // --- stepping ---

    firstStep() { return this.header.direction === 1 ? this.header.seq_len - 1 : 0; }
    lastStep() { return this.header.direction === 1 ? 0 : this.header.seq_len - 1; }

    step(delta) {
      if (!this.header) return false;
      const sign = this.header.direction === 1 ? -1 : 1; // "next" follows the direction's processing order
      return this.go(this.t + sign * delta);
    }

    go(t) {
      const h = this.header;
      if (!h) return false;
      t = Math.min(Math.max(Math.round(t), 0), h.seq_len - 1);
      if (t === this.t) { this.slider.value = String(t); return false; }
      const wanted = timeWindow(h.seq_len, t, h.window_steps);
      if (wanted[0] !== h.start) this.requestWindow(t, wanted[0]);
      this.pendingT = null;
      if (t < h.start || t >= h.stop) { // outside the data in hand: wait at the edge, go on when it arrives
        this.pendingT = t;
        t = Math.min(Math.max(t, h.start), h.stop - 1);
        if (t === this.t) { this.slider.value = String(t); return false; }
      }
      this.t = t;
      this.drawStep(false); this.drawTime(false); this.drawCell(); this.drawReadout();
      this.scheduleReport();
      return true;
    }

    requestWindow(t, start) {
      if (this.requestedStart === start || !this.options.report) return;
      this.requestedStart = start;
      this.report(true, t);
    }

    key(event) {
      if (!this.header || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
      const target = event.target;
      const editable = target && (target.isContentEditable ||
        /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) ||
        (target.closest && target.closest("[role=slider],[role=tab],[role=combobox],[role=listbox],[role=menu]")));
      if (editable) return;
      const actions = { ArrowRight: () => this.step(1), ArrowLeft: () => this.step(-1),
                        Home: () => this.go(this.firstStep()), End: () => this.go(this.lastStep()),
                        p: () => this.togglePlay() };
      const action = actions[event.key];
      if (!action) return;
      event.preventDefault();
      action();
    }

    togglePlay() {
      this.playing = !this.playing;
      this.playBtn.textContent = this.playing ? "❚❚ Pause" : "▶ Play";
      this.box.dataset.playing = String(this.playing);
      if (this.playing && this.t === this.lastStep()) this.go(this.firstStep());
      this.restartPlay();
      if (!this.playing) this.report(false);
    }

    restartPlay() {
      clearInterval(this.timer);
      if (!this.playing) return;
      this.timer = setInterval(() => {
        if (this.t === this.lastStep()) { this.togglePlay(); return; }
        this.step(1); // stalls (t stays) at a window edge until the next window arrives
      }, 1000 / this.speed);
    }

    scheduleReport() {
      clearTimeout(this.reportTimer);
      if (this.playing || !this.options.report) return;
      this.reportTimer = setTimeout(() => this.report(false), REPORT_AFTER_MS);
    }

    report(urgent, t) {
      if (!this.options.report) return;
      clearTimeout(this.reportTimer);
      // Where the user is going: a step still waiting for its window counts, not the edge the page waits at.
      const view = { t: t === undefined ? (this.pendingT ?? this.t) : t, unit: this.unit, batch: this.batch };
      if (!urgent && this.reported && view.t === this.reported.t && view.unit === this.reported.unit &&
          view.batch === this.reported.batch) return;
      this.reported = view;
      this.sent = (this.sent || 0) + 1;
      this.options.report({ ...view, seq: this.sent }, urgent);
    }

    select(unit, batch) {
      if (unit === this.unit && batch === this.batch) return;
      const batchChanged = batch !== this.batch;
      this.unit = unit; this.batch = batch; this.terms = null;
      this.drawUnitBoxes(); this.drawTime(batchChanged); this.drawCell(); this.drawReadout();
      this.report(false);
    }

    // --- drawing ---

    slice(name, t) {
      const h = this.header, spec = h.arrays[name], [, B, width] = spec.shape;
      const base = (t - h.start) * B * width, rows = [];
      for (let b = 0; b < B; b++) rows.push(this.arrays[name].subarray(base + b * width, base + (b + 1) * width));
      return rows;
    }

    place() { // "layer 1 · reverse" where the model has several layers or two directions (figures.position)
      const h = this.header, parts = h.num_layers > 1 ? [`layer ${h.layer}`] : [];
      if (h.num_directions > 1) parts.push(h.direction_name);
      return parts.join(" · ");
    }

    hover(name, t) {
      const h = this.header, q = QUANTITIES[name];
      return hoverText(`${q.words} ${name}`, stepLabel(t, h.labels[t - h.start]), "%{y}", "unit %{x}", this.place());
    }

    colourAxes(bars) { // bars[axis]: [len in px, placement]
      const h = this.header, bound = h.c_bound, narrow = bars.coloraxis[1].orientation === "h";
      const axes = {
        coloraxis: [{ cmin: 0, cmax: 1, colorscale: h.scales.gate }, narrow ? "f, i, o (0..1)" : "f, i, o"],
        coloraxis2: [{ cmin: -1, cmax: 1, cmid: 0, colorscale: h.scales.diverging },
                     narrow ? "g, h (−1..1)" : "g, h"],
        coloraxis3: [{ cmin: -bound, cmax: bound, cmid: 0, colorscale: h.scales.diverging },
                     `c ±${bound.toPrecision(3)}<br>from data`],
      };
      const layout = {};
      for (const [name, [axis, title]] of Object.entries(axes)) {
        layout[name] = { ...axis, colorbar: colourBar(title, ...bars[name]) };
      }
      return layout;
    }

    unitBoxes() {
      const h = this.header, shapes = [];
      h.order.forEach((name, k) => {
        const axis = k === 0 ? "" : String(k + 1), width = name === "h" ? h.h_units : h.hidden;
        if (this.unit >= width) return;
        shapes.push({ type: "rect", xref: `x${axis}`, yref: `y${axis}`, x0: this.unit - 0.5, x1: this.unit + 0.5,
                      y0: -0.5, y1: h.batch - 0.5, line: { color: h.marker, width: 2 },
                      fillcolor: "rgba(0,0,0,0)" });
      });
      return shapes;
    }

    narrow() { return this.root.clientWidth > 0 && this.root.clientWidth < NARROW_PX; }

    drawUnitBoxes() {
      if (this.stepDiv.data) Plotly.relayout(this.stepDiv, { shapes: this.unitBoxes() });
    }

    drawStep(full) {
      const h = this.header, t = this.t;
      if (!full && this.stepDiv.data) { // stepping: only the six z arrays and their hover text change
        Plotly.restyle(this.stepDiv, { z: h.order.map((name) => this.slice(name, t)),
                                       hovertemplate: h.order.map((name) => this.hover(name, t)) });
        return;
      }
      const data = [], layout = {}, annotations = [];
      const narrow = this.narrow(), perRow = narrow ? 2 : 3, rows = 6 / perRow;
      const width = this.stepDiv.clientWidth || this.root.clientWidth || 700;
      this.drawnWidth = this.root.clientWidth;
      const margin = { l: 44, r: 10, t: 4, b: BAND.ticks + BAND.axisTitle, pad: 0 };
      const plotW = width - margin.l - margin.r;
      // Wide: two columns of colour bars to the right (130 px); narrow: three bars stacked below.
      const barsPx = narrow ? 0 : 130, gap = 34, colW = (plotW - barsPx - gap * (perRow - 1)) / perRow;
      const columns = Array.from({ length: perRow }, (_, c) => [c * (colW + gap) / plotW,
                                                                (c * (colW + gap) + colW) / plotW]);
      // About three or four ticks an axis: each tick label is redrawn on every step (ten an axis cost ~10 ms a step).
      const tick = (n) => Math.max(1, Math.ceil(n / (narrow ? 3 : 4)));
      const tall = (narrow ? 64 : 90) + 18 * Math.min(h.batch, 16);
      const { domains, area } = verticalDomains(Array.from({ length: rows }, (_, r) => [
        (r ? BAND.ticks : 0) + BAND.panel, tall]));
      h.order.forEach((name, k) => {
        const row = Math.floor(k / perRow), col = k % perRow;
        const axis = k === 0 ? "" : String(k + 1), width = name === "h" ? h.h_units : h.hidden;
        data.push({ type: "heatmap", z: this.slice(name, t), name, coloraxis: QUANTITIES[name].axis,
                    hovertemplate: this.hover(name, t), xaxis: `x${axis}`, yaxis: `y${axis}` });
        layout[`xaxis${axis}`] = { domain: columns[col], anchor: `y${axis}`, dtick: tick(width), tickangle: 0,
                                   tickfont: { size: narrow ? 10 : 11 }, fixedrange: true,
                                   automargin: false,
                                   title: { text: row === rows - 1 ? "unit" : "", font: { size: 12 }, standoff: 4 } };
        layout[`yaxis${axis}`] = { domain: domains[row], anchor: `x${axis}`, autorange: "reversed",
                                   dtick: tick(h.batch), tickfont: { size: narrow ? 10 : 11 }, fixedrange: true,
                                   title: { text: col === 0 ? "batch" : "", font: { size: 12 }, standoff: 4 } };
        annotations.push({ text: `<b>${QUANTITIES[name].symbol}</b> ${QUANTITIES[name].words}`,
                           x: columns[col][0], y: domains[row][1], xref: "paper", yref: "paper", xanchor: "left",
                           yanchor: "bottom", showarrow: false, font: { size: narrow ? 12 : 13 } });
      });
      const BAR_ROW = 62; // a horizontal bar: its title, the bar, its tick labels and some air
      if (narrow) { // the three bars stacked below the heatmaps
        const below = (k) => [Math.min(200, plotW * 0.55), { orientation: "h", x: 0, xanchor: "left",
          y: -(BAND.ticks + BAND.axisTitle + 10 + k * BAR_ROW) / area, yanchor: "top" }];
        Object.assign(layout, this.colourAxes({ coloraxis: below(0), coloraxis2: below(1), coloraxis3: below(2) }));
        margin.b += 3 * BAR_ROW + 10;
      } else { // beside each row, its title band included
        const beside = (row, px) => [tall + BAND.panel, { x: 1 - px / plotW, xanchor: "left",
                                                          y: domains[row][1] + BAND.panel / area, yanchor: "top" }];
        Object.assign(layout, this.colourAxes({ coloraxis: beside(0, 122), coloraxis2: beside(1, 122),
                                                coloraxis3: beside(1, 58) }));
      }
      Object.assign(layout, { annotations, shapes: this.unitBoxes(), margin, uirevision: h.id,
                              height: Math.round(area + margin.t + margin.b) });
      Plotly.react(this.stepDiv, data, layout, PLOT_CONFIG);
      if (!this.stepDiv.__lvxClick) {
        this.stepDiv.__lvxClick = true;
        this.stepDiv.on("plotly_click", (event) => {
          const point = event.points && event.points[0];
          if (point) this.select(Number(point.x), Number(point.y));
        });
      }
    }

    // The over-time figure: the layer's input, its six quantities and its output as rows × time, the readout
    // (target, prediction) below, over a display window around t; t is marked by a shape, moved on each step.
    drawTime(full) {
      const h = this.header, t = this.t;
      const budget = Math.max(1, Math.floor(h.over_time_values / (6 * h.hidden)));
      let [start, stop] = timeWindow(h.seq_len, t, budget);
      start = Math.max(start, h.start); stop = Math.min(stop, h.stop);
      const same = this.displayWindow && this.displayWindow[0] === start && this.displayWindow[1] === stop;
      if (!full && same && this.timeDiv.data) {
        this.placeMarker();
        return;
      }
      this.displayWindow = [start, stop];
      const narrow = this.narrow(), width = this.timeDiv.clientWidth || this.root.clientWidth || 700;
      this.drawnWidth = this.root.clientWidth;
      // Wide: two columns of colour bars in the right margin; narrow: none (the step figure above has them).
      const margin = { l: narrow ? 50 : 60, r: narrow ? 10 : 150, t: BAND.title, b: BAND.ticks + BAND.axisTitle,
                       pad: 0 };
      const plotW = width - margin.l - margin.r;
      const rows = this.timeRows(start, stop);
      const { domains, area } = verticalDomains(rows.map((row) => [BAND.panel, Math.round(64 * row.weight)]));
      const data = [], layout = {}, annotations = [];
      rows.forEach((row, k) => {
        const axis = k === 0 ? "" : String(k + 1);
        for (const trace of row.traces) data.push({ ...trace, xaxis: "x", yaxis: `y${axis}` });
        layout[`yaxis${axis}`] = { domain: domains[k], anchor: "x", fixedrange: true, tickfont: { size: 10 },
                                   title: { text: row.axisTitle, font: { size: 11 } }, ...(row.yaxis || {}) };
        annotations.push({ text: row.title, x: 0, y: domains[k][1], xref: "paper", yref: "paper", xanchor: "left",
                           yanchor: "bottom", showarrow: false, font: { size: 12 } });
      });
      const xaxis = { title: { text: "time step t", font: { size: 12 }, standoff: 4 }, anchor: `y${rows.length}`,
                      automargin: false,
                      range: [start - 0.5, stop - 0.5], autorange: false, fixedrange: true, tickfont: { size: 11 } };
      if (stop - start <= 64) Object.assign(xaxis, timeTicks(h.labels.slice(start - h.start, stop - h.start), start,
                                                             stop, plotW));
      else xaxis.nticks = Math.max(3, Math.floor(plotW / 70));
      if (narrow) {
        Object.assign(layout, this.colourAxes({ coloraxis: [100, { orientation: "h" }],
                                                coloraxis2: [100, { orientation: "h" }],
                                                coloraxis3: [100, { orientation: "h" }] }));
        for (const axis of ["coloraxis", "coloraxis2", "coloraxis3"]) layout[axis].showscale = false;
      } else { // a bar beside the rows it colours (their title bands included)
        const at = (name) => rows.findIndex((row) => row.key === name);
        const beside = (first, last, px) => [(domains[first][1] - domains[last][0]) * area + BAND.panel,
          { x: 1 + px / plotW, xanchor: "left", y: domains[first][1] + BAND.panel / area, yanchor: "top" }];
        Object.assign(layout, this.colourAxes({ coloraxis: beside(at("f"), at("o"), 12),
                                                coloraxis2: beside(at("g"), at("h"), 12),
                                                coloraxis3: beside(at("c"), at("h"), 80) }));
      }
      const windowNote = stop - start === h.seq_len ? "" : ` · steps ${start}–${stop - 1} of ${h.seq_len}`;
      const place = narrow ? this.place() : `layer ${h.layer} · ${h.direction_name}`; // a phone: only what varies
      const where = place ? ` · ${place}` : "";
      Object.assign(layout, {
        xaxis, annotations, margin, height: Math.round(area + margin.t + margin.b), showlegend: false,
        title: { text: `over time${where} · batch ${this.batch}${windowNote}`, font: { size: 14 }, x: 0,
                 xref: "container", xanchor: "left", y: 1, yref: "container", yanchor: "top", pad: { t: 8, l: 8 } },
        uirevision: h.id,
      });
      Plotly.react(this.timeDiv, data, layout, PLOT_CONFIG);
      if (!this.timeDiv.__lvxPlaced) { // after every redraw (a resize too) the axis moves: so does the frame
        this.timeDiv.__lvxPlaced = true;
        this.timeDiv.on("plotly_afterplot", () => this.placeMarker());
      }
      this.placeMarker();
    }

    placeMarker() {
      const full = this.timeDiv._fullLayout;
      if (!full || !full.xaxis) return;
      const xa = full.xaxis, left = xa._offset + xa.l2p(this.t - 0.5), right = xa._offset + xa.l2p(this.t + 0.5);
      const below = (1 - full.yaxis.domain[1]) * full._size.h; // from the first row down: clear of its title
      Object.assign(this.marker.style, { left: `${left}px`, width: `${right - left}px`,
                                         top: `${full._size.t + below}px`, height: `${full._size.h - below}px`,
                                         borderColor: this.header.marker });
      this.marker.dataset.t = String(this.t);
    }

    series(name, start, stop, feature) { // one feature of batch element `batch` over [start, stop)
      const h = this.header, [, B, width = 1] = h.arrays[name].shape, out = new Float32Array(stop - start);
      for (let s = start; s < stop; s++) out[s - start] = this.arrays[name][((s - h.start) * B + this.batch) * width + feature];
      return out;
    }

    matrix(name, start, stop) { // features × time of batch element `batch`
      const width = this.header.arrays[name].shape[2], rows = [];
      for (let u = 0; u < width; u++) rows.push(this.series(name, start, stop, u));
      return rows;
    }

    timeRows(start, stop) {
      const h = this.header, rows = [], where = this.place();
      const steps = Array.from({ length: stop - start }, (_, k) => start + k);
      // Per step, " (label)" where its label says more than t ("store", a character); null when none does.
      const extras = steps.map((s) => stepLabel(s, h.labels[s - h.start]).slice(`t=${s}`.length));
      const labelled = extras.some(Boolean), time = "t=%{x:d}" + (labelled ? "%{customdata}" : "");
      const withLabels = (trace, rowCount) => (labelled
        ? { ...trace, customdata: rowCount == null ? extras : Array(rowCount).fill(extras) } : trace);
      const heat = (name, axis, what, index) => {
        const z = this.matrix(name, start, stop);
        return withLabels({ type: "heatmap", z, x0: start, dx: 1, coloraxis: axis, name: what,
                            hovertemplate: hoverText(what, time, this.batch, `${index} %{y}`, where) }, z.length);
      };
      const line = (what, y, style) => withLabels({ type: "scatter", x: steps, y, name: what, showlegend: false,
        hovertemplate: hoverText(what, time, this.batch, null, where, "value %{y:.4f}"), ...style });
      // the layer's input: lines for up to three features, else a heatmap (characters label a one-hot's rows)
      const inputTitle = `<b>${escapeHtml(h.input_name)}</b>`;
      if (h.input_size <= 3) {
        rows.push({ key: "x", weight: 1.2, title: inputTitle, axisTitle: "value", traces:
          Array.from({ length: h.input_size }, (_, k) => line(`input x[${k}]`, this.series("x", start, stop, k),
                                                              { mode: "lines+markers", marker: { size: 4 } })) });
      } else {
        const trace = { ...heat("x", "coloraxis4", "input x", h.vocab ? "char" : "feature"),
                        colorscale: h.scales.diverging, zmid: 0, showscale: false };
        delete trace.coloraxis;
        const yaxis = h.vocab ? { tickvals: h.vocab.map((_, k) => k), ticktext: h.vocab.map(escapeHtml),
                                  autorange: "reversed" } : { autorange: "reversed" };
        rows.push({ key: "x", weight: Math.min(2, 0.8 + h.input_size / 16), title: inputTitle,
                    axisTitle: h.vocab ? "char" : "feature", traces: [trace], yaxis });
      }
      for (const name of h.order) {
        const q = QUANTITIES[name];
        const title = `<b>${q.symbol}</b> ${q.words}` +
          (name === "h" && h.num_directions === 1 ? " = this layer's output" : "");
        rows.push({ key: name, weight: 1, title, axisTitle: "unit", yaxis: { autorange: "reversed" },
                    traces: [heat(name, q.axis, `${q.words} ${name}`, "unit")] });
      }
      if (h.arrays.out) {
        rows.push({ key: "out", weight: 1.2, title: "<b>output</b> of this layer (forward | reverse h)",
                    axisTitle: "unit", traces: [heat("out", "coloraxis2", "layer output", "unit")],
                    yaxis: { autorange: "reversed" } });
      }
      if (h.arrays.target) { // no legend: the row's title names each line in its colour
        const traces = [line("target", this.series("target", start, stop, 0),
                             { mode: "markers", marker: { color: "#2ca02c", size: 7, symbol: "x" } })];
        let title = '<b>the task</b>: <span style="color:#2ca02c">✕ target</span>';
        if (h.arrays.prediction) {
          traces.push(line("prediction", this.series("prediction", start, stop, 0),
                           { mode: "lines", line: { color: "#d62728", width: 2 } }));
          title += ' and <span style="color:#d62728">— the trained model\'s prediction</span>';
        } else {
          title += " (train to see a prediction)";
        }
        rows.push({ key: "task", weight: 1.4, axisTitle: "value", traces, title });
      }
      return rows;
    }

    // --- the cell diagram and its numbers ---

    value(name, t, unit) {
      const h = this.header, [, B, width = 1] = h.arrays[name].shape;
      if (unit >= width) return NaN;
      return this.arrays[name][((t - h.start) * B + this.batch) * width + unit];
    }

    previous(name, t, unit) { // h or c as step t saw it
      const h = this.header, prev = h.direction === 1 ? t + 1 : t - 1;
      if (prev >= h.start && prev < h.stop) return this.value(name, prev, unit);
      const edge = this.arrays[`${name}_before`], width = edge.length / h.batch; // (B, ·): the state before the window
      return unit < width ? edge[this.batch * width + unit] : NaN;
    }

    drawCell() {
      const h = this.header, t = this.t, u = this.unit;
      const rev = h.direction === 1, p = rev ? "t+1" : "t−1";
      const v = { f: this.value("f", t, u), i: this.value("i", t, u), o: this.value("o", t, u),
                  g: this.value("g", t, u), c: this.value("c", t, u), h: this.value("h", t, u),
                  cPrev: this.previous("c", t, u), hPrev: this.previous("h", t, u) };
      v.tanhC = Math.tanh(v.c);
      const gate = h.scales.gate, div = h.scales.diverging, bound = h.c_bound;
      const fill = { f: colourAt(gate, v.f, 0, 1), i: colourAt(gate, v.i, 0, 1), o: colourAt(gate, v.o, 0, 1),
                     g: colourAt(div, v.g, -1, 1), h: colourAt(div, v.h, -1, 1), hPrev: colourAt(div, v.hPrev, -1, 1),
                     c: colourAt(div, v.c, -bound, bound), cPrev: colourAt(div, v.cPrev, -bound, bound),
                     tanhC: colourAt(div, v.tanhC, -1, 1) };
      const node = (key, x, y, label, value, shape) => {
        const w = shape === "circle" ? 0 : 82;
        const body = shape === "circle"
          ? `<circle cx="${x}" cy="${y}" r="28" fill="${fill[key]}" stroke="#333"/>`
          : `<rect x="${x - w / 2}" y="${y - 22}" width="${w}" height="44" rx="6" fill="${fill[key]}" stroke="#333"/>`;
        const ink = inkFor(fill[key]);
        return `<g class="lvx-node" data-node="${key}">${body}<text x="${x}" y="${y - 4}" fill="${ink}" ` +
          `text-anchor="middle" font-size="14">${label}</text><text x="${x}" y="${y + 14}" fill="${ink}" ` +
          `text-anchor="middle" font-size="14" data-value="${key}">${fmt(value)}</text></g>`;
      };
      const op = (x, y, symbol) => `<circle cx="${x}" cy="${y}" r="11" fill="#fff" stroke="#333"/>` +
        `<text x="${x}" y="${y + 5}" text-anchor="middle" font-size="15">${symbol}</text>`;
      const line = (d) => `<path d="${d}" fill="none" stroke="#777" stroke-width="1.6" marker-end="url(#lvx-arrow)"/>`;
      const wire = (d) => `<path d="${d}" fill="none" stroke="#777" stroke-width="1.6"/>`;
      const svg = `<svg viewBox="0 0 560 340" class="lvx-svg" role="img" aria-label="LSTM cell of unit ${u} at t=${t}">
        <defs><marker id="lvx-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto">
        <path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>
        <rect x="100" y="28" width="400" height="244" rx="14" fill="#f7f7f7" stroke="#bbb"/>
        ${line("M84,60 L178,60")} ${line("M202,60 L318,60")} ${line("M342,60 L471,60")}
        ${line("M190,196 L190,72")} ${wire("M260,196 L260,140")} ${line("M260,140 L318,140")} ${line("M330,196 L330,152")}
        ${line("M330,128 L330,72")} ${line("M470,60 L470,116")} ${line("M470,162 L470,209")} ${line("M426,222 L457,222")}
        ${line("M470,234 L470,276")} ${wire("M84,290 L400,290")} ${line("M125,330 L125,292")}
        ${line("M190,290 L190,250")} ${line("M260,290 L260,250")} ${line("M330,290 L330,250")} ${line("M400,290 L400,250")}
        ${op(190, 60, "×")} ${op(330, 60, "+")} ${op(330, 140, "×")} ${op(470, 222, "×")}
        ${node("cPrev", 45, 60, `c<tspan font-size="9" dy="3">${p}</tspan>`, v.cPrev)}
        ${node("hPrev", 45, 290, `h<tspan font-size="9" dy="3">${p}</tspan>`, v.hPrev)}
        <text x="134" y="328" font-size="12" fill="#333">x<tspan font-size="9" dy="3">t</tspan><tspan dy="-3"> with h</tspan><tspan font-size="9" dy="3">${p}</tspan><tspan dy="-3"> feeds every gate</tspan></text>
        ${node("f", 190, 222, "f  σ", v.f, "circle")} ${node("i", 260, 222, "i  σ", v.i, "circle")}
        ${node("g", 330, 222, "g  tanh", v.g, "circle")} ${node("o", 400, 222, "o  σ", v.o, "circle")}
        ${node("tanhC", 470, 140, "tanh(c)", v.tanhC)}
        ${node("c", 514, 60, "c<tspan font-size='9' dy='3'>t</tspan>", v.c)}
        ${node("h", 470, 300, "h<tspan font-size='9' dy='3'>t</tspan>", v.h)}
        <text x="300" y="18" text-anchor="middle" font-size="12" fill="#333">unit ${u} · batch ${this.batch} · t=${t}${rev ? " (reverse: reads t+1)" : ""}</text>
      </svg>`;
      this.cellBox.innerHTML = svg + `<div class="lvx-eq" data-testid="lvx-equations">${this.equations(v, p)}</div>`;
    }

    equations(v, p) {
      // Each line breaks only between its "= …" parts, so a narrow screen wraps it instead of cutting it.
      const line = (...parts) => `<div class="lvx-eq-line">${parts.map((part, k) =>
        `<span class="lvx-eq-part">${k ? "= " : ""}${part}</span>`).join(" ")}</div>`;
      const lines = [];
      const T = this.terms && this.terms.terms;
      const k = this.t - this.header.start;
      for (const [name, fn] of [["f", "σ"], ["i", "σ"], ["g", "tanh"], ["o", "σ"]]) {
        const sub = (text) => `<sub>${text}</sub>`;
        const parts = [`${name}${sub("t")}`, `${fn}(W${sub(name)}x${sub("t")} + U${sub(name)}h${sub(p)} + b${sub(name)})`];
        if (T && T[name]) {
          const terms = T[name], input = this.termArray(terms, "input")[k];
          const recurrent = this.termArray(terms, "recurrent")[k];
          parts.push(`${fn}(${sum([input, recurrent, terms.bias])})`, `${fn}(${fmt(input + recurrent + terms.bias)})`);
        }
        lines.push(line(...parts, `<b data-eq="${name}">${fmt(v[name])}</b>`));
      }
      lines.push(line(`c<sub>t</sub>`, `f ⊙ c<sub>${p}</sub> + i ⊙ g`,
                      `${fmt(v.f)}·${factor(v.cPrev)} + ${fmt(v.i)}·${factor(v.g)}`,
                      `<b data-eq="c">${fmt(v.c)}</b>`));
      const projected = this.header.proj_size > 0;
      lines.push(projected
        ? `<div class="lvx-eq-line">h<sub>t</sub> = W<sub>hr</sub>(o ⊙ tanh(c<sub>t</sub>)); this unit's ` +
          `o ⊙ tanh(c<sub>t</sub>) = ${fmt(v.o * v.tanhC)}</div>`
        : line(`h<sub>t</sub>`, `o ⊙ tanh(c<sub>t</sub>)`, `${fmt(v.o)}·${factor(v.tanhC)}`,
               `<b data-eq="h">${fmt(v.h)}</b>`));
      if (!T) lines.push(`<div class="lvx-note">The split into W x, U h and b arrives for the unit Python holds.</div>`);
      return lines.join("");
    }

    termArray(parts, which) { // decoded once per unit payload, not on every step
      const key = `__${which}`;
      return parts[key] || (parts[key] = floats(parts[which]));
    }

    drawReadout() {
      const h = this.header, t = this.t, label = h.labels[t - h.start];
      this.slider.value = String(t);
      const more = label != null && label !== String(t) && label !== `t=${t}`; // as stepLabel: only what says more
      this.readout.textContent = `t = ${t} of 0–${h.seq_len - 1}` + (more ? ` · “${label}”` : "");
      this.where.textContent = `layer ${h.layer} · ${h.direction_name}` +
        (h.direction === 1 ? " (Next goes t → t−1: the order this direction reads)" : "") +
        ` · unit ${this.unit} · batch ${this.batch}` +
        (h.stop - h.start < h.seq_len ? ` · steps ${h.start}–${h.stop - 1} in the page` : "");
      this.box.dataset.t = String(t);
      this.box.dataset.unit = String(this.unit);
      this.box.dataset.batch = String(this.batch);
    }

    destroy() {
      clearInterval(this.timer); clearTimeout(this.reportTimer); clearTimeout(this.resizeTimer);
      document.removeEventListener("keydown", this.onKey);
      window.removeEventListener("resize", this.onResize);
      if (window.Plotly) { Plotly.purge(this.stepDiv); Plotly.purge(this.timeDiv); }
      this.box.remove();
    }
  }

  window.LstmExplorer = {
    decode, timeWindow, escapeHtml,
    mount(root, options) { return new Explorer(root, options); },
  };
})();
