// tunableconv web app: talks to the JSON/multipart API of tunableconv.app.server.
// No framework, nothing loaded from outside the server.
//
// How a knob move is shown (see tunableconv/preview.py for the maths):
//   1. instantly, the blend of the model's outputs at a few anchor settings around the new
//      setting (fetched once per image, model and control from /api/anchors), drawn into
//      #after-preview;
//   2. when the control rests (REST_MS), the exact result from /api/restore. Requests carry a
//      channel and an increasing seq: the server cancels a superseded pass at its next layer
//      and answers it 204, so a fast drag never queues a backlog.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const REST_MS = 120;              // a control that has not moved for this long "rests"
  const MAP_MAX_SIDE = 512;         // knob maps are sent at most this large (they are smooth)

  const state = {
    config: null,
    models: [],
    model: null,         // the selected model's description
    original: null,      // image info of the upload / sample
    image: null,         // image info shown (the original or a degraded copy)
    raw: false,          // knobs mode: raw p, one control per knob (instead of the main slider)
    slider: 1,           // the main slider's position u (models with a slider)
    p: [],               // raw knob values (knobs mode)
    lastP: null,         // the p the server used for the last result
    lastPFor: null,
    lastPWeights: null,  // the knob weights that last p answered (warped simplex models)
    channel: `page-${Math.random().toString(36).slice(2, 10)}`,
    seq: 0,
    shownSeq: 0,
    inflight: 0,
    results: 0,          // exact results shown so far (data-version of #after)
    afterUrl: null,
    sweepUrl: null,
    degradeSeq: 0,
    degraded: false,     // show the original degraded as the selected model's file says (apply / clean)
    anchors: null,       // {key, set (the server's JSON), pixels: [Uint8ClampedArray], width, height}
    anchorsKey: null,
    region: null,        // {top, left, height, width} of the preview region (input pixels)
    paint: { on: false, canvas: null, value: 0, size: 48, feather: 0.6, target: null, drawing: false, splitBefore: null },
    note: null,          // a message to keep in the status line when the next result arrives
  };

  // ---------------------------------------------------------------- helpers
  function status(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind || "";
  }

  async function api(path, options = {}) {
    let res;
    try {
      res = await fetch(path, options);
    } catch (err) {
      throw new Error("the server cannot be reached (is `tunableconv serve` still running?)");
    }
    if (!res.ok) {
      let detail = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) { /* not JSON */ }
      const err = new Error(detail);
      err.status = res.status;
      throw err;
    }
    return res;
  }

  const postJSON = (path, body) =>
    api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  const fmt = (v, digits = 2) => Number(v).toFixed(digits);
  const clamp01 = (v) => Math.min(1, Math.max(0, v));
  const round6 = (v) => Math.round(v * 1e6) / 1e6;

  // ---------------------------------------------------------------- models
  async function loadModels() {
    const [cfg, models] = await Promise.all([api("/api/config").then((r) => r.json()), api("/api/models").then((r) => r.json())]);
    state.config = cfg;
    state.models = models.models;
    const sel = $("model-select");
    sel.innerHTML = "";
    for (const m of state.models) {
      const opt = document.createElement("option");
      opt.value = m.name;
      if (m.error) {
        // a model file the server could not load: listed, not selectable
        opt.disabled = true;
        opt.textContent = `${m.name} · unavailable`;
        opt.title = m.error;
      } else {
        opt.textContent = m.task ? `${m.name} · ${m.task}` : m.name;
      }
      sel.appendChild(opt);
    }
    sel.value = models.default;
    $("sweep-steps").max = String(cfg.max_sweep_steps);
    selectModel(models.default, false);
  }

  const mainSlider = (m) => (m && m.main_slider ? m.knob_space.sliders.find((x) => x.name === m.main_slider) : null);
  const sliderMode = () => Boolean(mainSlider(state.model)) && !state.raw;
  const isTriangle = (m) => Boolean(m && m.simplex && m.num_params === 3);
  // a simplex model without a slider whose knobs carry weight warps (tunableconv calibrate): the
  // page sends the weights by name and the server warps them (the anchors too)
  const warpedKnobs = (m) => Boolean(m && m.simplex && !mainSlider(m) && m.knobs.some((k) => k.calibrated));

  function selectModel(name, refresh = true) {
    const m = state.models.find((x) => x.name === name);
    if (!m || m.error) return;
    if (state.paint.on) setPaint(false);
    state.model = m;
    state.p = m.default_p.slice();
    state.lastP = null;          // the last p answered another model's request
    state.lastPWeights = null;
    const sl = mainSlider(m);
    state.slider = sl ? sliderPositionOf(sl, state.p) : 1;
    state.raw = !sl;
    $("raw-toggle").checked = false;
    $("raw-label").hidden = !sl;
    const bits = [m.summary];
    if (sl) bits.push(`slider ${sl.name}: ${m.sliders.find((x) => x.name === sl.name).formula}${sl.calibration ? " (calibrated)" : ""}`);
    if (m.scale > 1) bits.push(`×${m.scale}: the output is shown at its real size beside a bicubic upscale`);
    if (!m.tiling_exact) bits.push("full resolution: the whole image in one pass (this model cannot be tiled)");
    if (m.card && m.card.length) bits.push(m.card[0]);
    $("model-summary").textContent = bits.join(" · ");
    renderKnobs();
    renderSweepKnobs();
    renderDegradeCases();
    renderPaintCard();
    setBefore();
    if (refresh) {
      scheduleRestore(0);
      requestAnchors();
    }
    // a degraded image belongs to the model that degraded it: degrade again as this one does
    // (or show the original when this one cannot)
    if (state.original && (state.degraded || (state.image && state.image.id !== state.original.id))) {
      applyDegradation();
    }
  }

  function sliderPositionOf(sl, p) {
    // the raw position s of p on the slider's path (for the default p); calibrations invert
    const i = sl.start.findIndex((a, j) => Math.abs(sl.end[j] - a) > 1e-9);
    if (i < 0) return 1;
    const s = clamp01((p[i] - sl.start[i]) / (sl.end[i] - sl.start[i]));
    const cal = sl.calibration;
    if (!cal) return s;
    for (let k = 0; k + 1 < cal.raw.length; k++) {   // the inverse of the piecewise-linear map
      const [r0, r1] = [cal.raw[k], cal.raw[k + 1]];
      if (s >= r0 && s <= r1) return r1 > r0 ? cal.slider[k] + (s - r0) / (r1 - r0) * (cal.slider[k + 1] - cal.slider[k]) : cal.slider[k];
    }
    return s;
  }

  // ---------------------------------------------------------------- degradation cases
  // The cases and their labels come from the server (the model file's task); the page only
  // lists them. A model without them cannot degrade: the controls are disabled.
  function renderDegradeCases() {
    const sel = $("degrade-case");
    const m = state.model;
    const previous = sel.value;
    sel.innerHTML = "";
    const cases = (m && m.degrade_cases) || [];
    for (const label of cases) {
      const opt = document.createElement("option");
      opt.value = label;
      opt.textContent = label === m.default_case ? `${label} (default)` : label;
      sel.appendChild(opt);
    }
    if (!cases.length) {
      const opt = document.createElement("option");
      opt.value = "";
      opt.textContent = "none for this model";
      sel.appendChild(opt);
      state.degraded = false;
    }
    sel.value = cases.includes(previous) ? previous : (m && m.default_case) || cases[0] || "";
    sel.disabled = !cases.length;
    sel.title = (m && m.degrade_error) || "";
    $("degrade-apply").disabled = !cases.length;
    $("degrade-note").textContent = cases.length
      ? "Degrades the original image as the selected model's task does in evaluation, at the chosen case."
      : (m && m.degrade_error) || "This model has no degradation to apply.";
  }

  // ---------------------------------------------------------------- knobs
  function knobValues() {
    // the request fields for the current knob state
    const m = state.model;
    if (!m || m.num_params === 0) return {};
    if (sliderMode()) return { slider: m.main_slider, value: state.slider, calibrated: true };
    if (warpedKnobs(m)) return { knobs: Object.fromEntries(m.knobs.map((k, i) => [k.name, clamp01(state.p[i])])), calibrated: true };
    return { p: state.p.map(clamp01) };
  }

  function moveOnSimplex(p, i, v) {
    // knob i set to v; the others share 1 - v in their current proportions
    const rest = p.reduce((acc, x, j) => acc + (j === i ? 0 : x), 0);
    const target = 1 - v;
    return p.map((x, j) => {
      if (j === i) return v;
      const share = rest > 1e-9 ? (x * target) / rest : target / (p.length - 1);
      return clamp01(round6(share));
    });
  }

  function sliderBlock({ id, label, description, value, ends }) {
    const wrap = document.createElement("div");
    wrap.className = "knob";
    const head = document.createElement("div");
    head.className = "knob-head";
    const lab = document.createElement("label");
    lab.htmlFor = id;
    lab.innerHTML = "<b></b>";
    lab.firstChild.textContent = label;
    const out = document.createElement("output");
    out.id = `${id}-out`;
    out.textContent = fmt(value);
    head.append(lab, out);
    wrap.appendChild(head);
    if (description) {
      const d = document.createElement("div");
      d.className = "knob-desc";
      d.textContent = description;
      wrap.appendChild(d);
    }
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id, min: "0", max: "1", step: "0.01", value: String(value) });
    input.className = "knob-slider";
    wrap.appendChild(input);
    if (ends) {
      const e = document.createElement("div");
      e.className = "knob-ends";
      const a = document.createElement("span");
      const b = document.createElement("span");
      a.textContent = ends[0];
      b.textContent = ends[1];
      if (ends[2]) a.title = ends[2];
      if (ends[3]) b.title = ends[3];
      e.append(a, b);
      wrap.appendChild(e);
    }
    return { wrap, input, out };
  }

  function sliderEnds(m, sl) {
    // which knob each end of the slider is all about, in the file's words
    const at = (p) => {
      const i = p.findIndex((v) => v > 0.999);
      return i >= 0 ? m.knobs[i] : null;
    };
    const a = at(sl.start);
    const b = at(sl.end);
    return [`← ${a ? a.name : "0"}`, `${b ? b.name : "1"} →`, a ? a.description : "", b ? b.description : ""];
  }

  const knobSliders = [];
  function renderKnobs() {
    const box = $("knobs");
    box.innerHTML = "";
    knobSliders.length = 0;
    $("triangle-box").hidden = true;
    const m = state.model;
    if (!m) return;
    if (m.num_params === 0) {
      box.innerHTML = '<p class="muted small">This model has no knobs: it is a fixed network.</p>';
      updateReadout();
      return;
    }
    const sl = mainSlider(m);
    if (sliderMode()) {
      const formula = m.sliders.find((x) => x.name === sl.name).formula;   // in s, the slider's position (as the summary)
      const desc = `${sl.description ? sl.description + ". " : ""}${formula}` +
        (sl.calibration ? ", s after calibration. Calibrated: equal slider steps give even changes." : "");
      const { wrap, input, out } = sliderBlock({
        id: `knob-${sl.name}`, label: `${sl.name} s`, description: desc,
        value: state.slider, ends: sliderEnds(m, sl),
      });
      input.setAttribute("aria-label", sl.name);
      input.addEventListener("input", () => {
        state.slider = Number(input.value);
        out.textContent = fmt(state.slider);
        knobsMoved();
      });
      box.appendChild(wrap);
    } else {
      m.knobs.forEach((k, i) => {
        const s = sliderBlock({ id: `knob-${i}`, label: k.name, description: k.description, value: state.p[i] });
        s.input.setAttribute("aria-label", k.name);
        s.input.addEventListener("input", () => {
          const v = Number(s.input.value);
          state.p = m.simplex ? moveOnSimplex(state.p, i, v) : state.p.map((x, j) => (j === i ? v : x));
          syncKnobSliders(i);
          knobsMoved();
        });
        knobSliders.push(s);
        box.appendChild(s.wrap);
      });
      if (m.simplex) {
        const note = document.createElement("p");
        note.className = "muted small";
        note.textContent = "These knobs are weights that sum to one: moving one rescales the others." +
          (isTriangle(m) ? " Or drag the point in the triangle." : "");
        box.appendChild(note);
      }
      if (isTriangle(m)) renderTriangle();
    }
    updateReadout();
  }

  function syncKnobSliders(except = -1) {
    knobSliders.forEach((o, j) => {
      if (j !== except) o.input.value = String(state.p[j]);
      o.out.textContent = fmt(state.p[j]);
    });
    if (isTriangle(state.model)) placeTriangleDot();
  }

  function knobsMoved() {
    updateReadout();
    showPreview();
    scheduleRestore();
    markSheet();
  }

  // ---- the triangle picker: three knobs on the simplex ----------------------------------
  // corners: knob 0 at the top, knob 1 bottom left, knob 2 bottom right; a point is the
  // barycentric combination of the corners with weights p.
  const TRI = { w: 280, h: 250, pad: 22, icon: 40 };
  const corners = () => [[TRI.w / 2, TRI.pad], [TRI.pad, TRI.h - TRI.pad], [TRI.w - TRI.pad, TRI.h - TRI.pad]];

  const esc = (text) => String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

  function renderTriangle() {
    const m = state.model;
    const box = $("triangle-box");
    box.hidden = false;
    const c = corners();
    // markup through the HTML parser, which puts <svg> and its children in the SVG namespace
    const parts = [`<polygon class="tri" points="${c.map((q) => q.join(",")).join(" ")}"></polygon>`];
    for (let k = 1; k < 4; k++) {    // grid lines at 0.25 steps, parallel to each side
      const t = k / 4;
      for (let side = 0; side < 3; side++) {
        const [a, b, o] = [c[side], c[(side + 1) % 3], c[(side + 2) % 3]];
        const p1 = [o[0] + (a[0] - o[0]) * t, o[1] + (a[1] - o[1]) * t];
        const p2 = [o[0] + (b[0] - o[0]) * t, o[1] + (b[1] - o[1]) * t];
        parts.push(`<line class="grid" x1="${p1[0]}" y1="${p1[1]}" x2="${p2[0]}" y2="${p2[1]}"></line>`);
      }
    }
    const labels = [[c[0][0], c[0][1] - 6, "middle"], [c[1][0], c[1][1] + 14, "start"], [c[2][0], c[2][1] + 14, "end"]];
    labels.forEach(([x, y, anchor], i) => {
      const k = m.knobs[i];
      parts.push(`<text class="corner" x="${x}" y="${y}" text-anchor="${anchor}">${esc(k.name)}` +
        `<title>${esc(k.description || k.name)}</title></text>`);
    });
    // the knobs' icons (a style's image) in the free space beside each corner: a data URI the
    // server checked (PNG/JPEG, base64), so it cannot leave the attribute or fetch anything
    const s = TRI.icon;
    const iconAt = [[c[0][0] + 22, c[0][1] - 8], [c[1][0] - 12, c[1][1] - s - 78], [c[2][0] - s + 12, c[2][1] - s - 78]];
    m.knob_space.knobs.slice(0, 3).forEach((k, i) => {
      if (!k.icon || !/^data:image\/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}$/.test(k.icon)) return;
      const [x, y] = iconAt[i];
      parts.push(`<image class="corner-icon" x="${x}" y="${y}" width="${s}" height="${s}" ` +
        `preserveAspectRatio="xMidYMid slice" href="${k.icon}"><title>${esc(k.name)}</title></image>`);
    });
    parts.push('<circle id="triangle-dot" class="dot" r="7"></circle>');
    box.innerHTML = `<svg id="triangle" viewBox="0 0 ${TRI.w} ${TRI.h + 14}" role="slider" ` +
      `aria-label="blend of ${esc(m.knobs.map((k) => k.name).join(", "))}">${parts.join("")}</svg>`;
    const svg = box.firstElementChild;
    let dragging = false;
    const move = (ev) => {
      const r = svg.getBoundingClientRect();
      const x = (ev.clientX - r.left) * (TRI.w / r.width);
      const y = (ev.clientY - r.top) * ((TRI.h + 14) / r.height);
      state.p = barycentric(x, y);
      syncKnobSliders();
      knobsMoved();
    };
    svg.addEventListener("pointerdown", (ev) => { dragging = true; svg.setPointerCapture(ev.pointerId); move(ev); });
    svg.addEventListener("pointermove", (ev) => { if (dragging) move(ev); });
    svg.addEventListener("pointerup", () => { dragging = false; });
    svg.addEventListener("pointercancel", () => { dragging = false; });
    placeTriangleDot();
  }

  function barycentric(x, y) {
    // the weights of the point (x, y) projected into the triangle, rounded, summing to one
    const [a, b, c] = corners();
    const det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1]);
    let l0 = ((b[1] - c[1]) * (x - c[0]) + (c[0] - b[0]) * (y - c[1])) / det;
    let l1 = ((c[1] - a[1]) * (x - c[0]) + (a[0] - c[0]) * (y - c[1])) / det;
    let l2 = 1 - l0 - l1;
    [l0, l1, l2] = [l0, l1, l2].map((v) => Math.max(0, v));
    const sum = l0 + l1 + l2 || 1;
    const q = [l0, l1, l2].map((v) => Math.round((v / sum) * 100) / 100);
    q[2] = round6(Math.max(0, 1 - q[0] - q[1]));     // exactly on the simplex
    if (q[0] + q[1] > 1) q[1] = round6(1 - q[0]);
    return q;
  }

  function placeTriangleDot() {
    const dot = $("triangle-dot");
    if (!dot) return;
    const c = corners();
    const p = state.p;
    dot.setAttribute("cx", p[0] * c[0][0] + p[1] * c[1][0] + p[2] * c[2][0]);
    dot.setAttribute("cy", p[0] * c[0][1] + p[1] * c[1][1] + p[2] * c[2][1]);
  }

  function updateReadout() {
    const m = state.model;
    let text = "–";
    if (m && m.num_params > 0) {
      if (state.paint.on) {
        text = `per pixel (the painted ${state.paint.target})`;
      } else if (sliderMode()) {
        text = state.lastP && state.lastPFor === state.slider
          ? `(${state.lastP.map((v) => fmt(v, 3)).join(", ")})`
          : `from ${m.main_slider} = ${fmt(state.slider)}`;
      } else {
        text = `(${state.p.map((v) => fmt(v, 3)).join(", ")})`;
        // weight warps: say which p the weights became (once the server has answered for them)
        if (warpedKnobs(m) && state.lastP && state.lastPWeights === state.p.join(",")) {
          text = `weights ${text} → p (${state.lastP.map((v) => fmt(v, 3)).join(", ")})`;
        }
      }
    }
    $("p-readout").textContent = text;
  }

  function renderSweepKnobs() {
    const sel = $("sweep-knob");
    const m = state.model;
    sel.innerHTML = "";
    const needKnob = Boolean(m && m.num_params > 1 && !sliderMode());
    sel.hidden = !needKnob;
    if (needKnob) {
      m.knobs.forEach((k, i) => {
        const opt = document.createElement("option");
        opt.value = String(i);
        opt.textContent = k.name;
        sel.appendChild(opt);
      });
    }
    $("sweep").disabled = !m || m.num_params === 0;
  }

  // ---------------------------------------------------------------- anchors: instant previews
  // The coordinates u of the current setting in the anchors' layout (preview.py).
  function currentU() {
    const a = state.anchors && state.anchors.set;
    if (!a) return null;
    if (a.control !== "knobs") return [state.slider];
    if (a.layout === "line") return [state.p[0]];
    return state.p.slice();
  }

  function controlRequest() {
    const m = state.model;
    return sliderMode() ? { control: m.main_slider, calibrated: true } : { control: "knobs", calibrated: warpedKnobs(m) };
  }

  // the anchors' weights at u: [[index, weight], ...] (the page's twin of preview.anchor_weights)
  function anchorWeights(set, u) {
    const axisCell = (values, x) => {
      const n = values.length;
      x = Math.min(values[n - 1], Math.max(values[0], x));
      let j = 0;
      while (j < n - 2 && x >= values[j + 1]) j++;
      const t = Math.min(1, Math.max(0, (x - values[j]) / (values[j + 1] - values[j])));
      return [j, t];
    };
    const out = [];
    if (set.layout === "line" || set.layout === "grid") {
      const n = set.values.length;
      const cells = u.map((x) => axisCell(set.values, x));
      const corners = 1 << cells.length;
      for (let c = 0; c < corners; c++) {
        let index = 0;
        let w = 1;
        cells.forEach(([j, t], a) => {
          const bit = (c >> (cells.length - 1 - a)) & 1;
          index = index * n + j + bit;
          w *= bit ? t : 1 - t;
        });
        if (w > 0) out.push([index, w]);
      }
      return out;
    }
    // triangle: the barycentric lattice {(i, j): i + j <= m}
    const m = set.values.length - 1;
    const sum = u.reduce((acc, v) => acc + Math.max(0, v), 0) || 1;
    const A = (Math.max(0, u[0]) / sum) * m;
    const B = (Math.max(0, u[1]) / sum) * m;
    let i = Math.min(m - 1, Math.max(0, Math.floor(A)));
    let j = Math.min(m - 1, Math.max(0, Math.floor(B)));
    const over = Math.max(0, i + j - (m - 1));
    const backI = Math.min(over, i);
    i -= backI;
    j -= over - backI;
    const fa = A - i;
    const fb = B - j;
    const idx = (a, b) => { let k = 0; for (let x = 0; x < a; x++) k += m + 1 - x; return k + b; };
    const lower = fa + fb <= 1;
    const cs = lower
      ? [[i, j, 1 - fa - fb], [i + 1, j, fa], [i, j + 1, fb]]
      : [[i + 1, j + 1, fa + fb - 1], [i + 1, j, 1 - fb], [i, j + 1, 1 - fa]];
    let total = 0;
    for (const [a, b, w] of cs) {
      const ww = Math.max(0, w);
      total += ww;
      if (ww > 0) out.push([idx(a, b), ww]);
    }
    return out.map(([k, w]) => [k, w / (total || 1)]);
  }

  async function requestAnchors() {
    const m = state.model;
    const img = state.image;
    state.anchors = null;
    renderSheet();
    if (!m || !img || m.num_params === 0) {
      $("preview-note").textContent = "";
      return;
    }
    const ctl = controlRequest();
    if (!isTriangle(m) && ctl.control === "knobs" && m.simplex && m.num_params > 3) {
      $("preview-note").textContent = "No instant preview for this many knobs on a simplex: each move waits for the model.";
      return;
    }
    const key = `${img.id}|${m.name}|${ctl.control}|${ctl.calibrated}`;
    state.anchorsKey = key;
    $("preview-note").textContent = "Preparing the instant preview (the model at a few settings)…";
    try {
      const set = await (await postJSON("/api/anchors", { image_id: img.id, model: m.name, ...ctl })).json();
      const pixels = await Promise.all(set.tiles.map(loadPixels));
      if (state.anchorsKey !== key) return;    // the image, model or control changed meanwhile
      state.anchors = { key, set, pixels, width: set.width, height: set.height };
      state.region = set.region;
      $("preview-note").textContent = `Instant preview: the blend of the model's outputs at ${set.tiles.length} ` +
        `settings (computed in ${fmt(set.compute_ms / 1000, 1)} s); the exact result follows when the control rests.`;
      renderSheet();
    } catch (err) {
      if (state.anchorsKey === key) $("preview-note").textContent = `No instant preview: ${err.message}`;
    }
  }

  async function loadPixels(url) {
    const blob = await (await api(url)).blob();
    const bitmap = await createImageBitmap(blob);
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  }

  function anchorsFit() {
    const a = state.anchors;
    return Boolean(a && state.image && state.model && a.key === `${state.image.id}|${state.model.name}|` +
      `${controlRequest().control}|${controlRequest().calibrated}`);
  }

  // draw the instant preview; returns the milliseconds it took (null: no anchors)
  function showPreview() {
    if (!anchorsFit()) return null;
    const t0 = performance.now();
    const a = state.anchors;
    const canvas = $("after-preview");
    if (canvas.width !== a.width || canvas.height !== a.height) {
      canvas.width = a.width;
      canvas.height = a.height;
    }
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(a.width, a.height);
    const d = out.data;
    const map = state.paint.on ? paintedU() : null;
    if (!map) {
      const ws = anchorWeights(a.set, currentU());
      const n = d.length;
      for (let i = 0; i < n; i += 4) {
        let r = 0, g = 0, b = 0;
        for (const [k, w] of ws) {
          const src = a.pixels[k];
          r += w * src[i]; g += w * src[i + 1]; b += w * src[i + 2];
        }
        d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = 255;
      }
    } else {
      // one setting per pixel: the painted axis from the map (8-bit levels: a table of weights)
      const table = [];
      for (let level = 0; level < 256; level++) table.push(anchorWeights(a.set, map.u(level / 255)));
      const scale = a.width / map.width;
      for (let y = 0; y < a.height; y++) {
        const my = Math.min(map.height - 1, Math.floor(y / scale));
        for (let x = 0; x < a.width; x++) {
          const mx = Math.min(map.width - 1, Math.floor(x / scale));
          const ws = table[map.levels[my * map.width + mx]];
          const i = (y * a.width + x) * 4;
          let r = 0, g = 0, b = 0;
          for (const [k, w] of ws) {
            const src = a.pixels[k];
            r += w * src[i]; g += w * src[i + 1]; b += w * src[i + 2];
          }
          d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = 255;
        }
      }
    }
    ctx.putImageData(out, 0, 0);
    canvas.hidden = false;
    $("after").classList.add("stale");
    const ms = performance.now() - t0;
    canvas.dataset.ms = String(Math.round(ms * 10) / 10);
    $("timing").textContent = `preview ${Math.round(ms)} ms (blend of ${a.set.tiles.length} settings) · exact result pending`;
    return ms;
  }

  // ---------------------------------------------------------------- live restore (exact)
  let timer = null;
  function scheduleRestore(delay = REST_MS) {
    clearTimeout(timer);
    timer = setTimeout(requestRestore, delay);
  }

  async function requestRestore() {
    if (!state.image || !state.model) return;
    const seq = ++state.seq;        // newer requests cancel this one on the server (204)
    const imageId = state.image.id;
    const slider = state.slider;
    const weights = state.p.join(",");   // the weights this request sends (a warped simplex: p differs)
    const body = { image_id: imageId, model: state.model.name, region: "preview", format: "png",
                   channel: state.channel, seq, ...knobValues() };
    if (state.paint.on) Object.assign(body, await mapRequest(false));
    const t0 = performance.now();
    $("after").classList.add("stale");
    status("Restoring…", "busy");
    state.inflight += 1;
    try {
      const res = await postJSON("/api/restore", body);
      if (res.status === 204 || seq < state.shownSeq) return;    // superseded by a newer move
      const blob = await res.blob();
      if (state.image && state.image.id === imageId && seq === state.seq) {
        state.shownSeq = seq;
        const p = res.headers.get("x-tunableconv-p");
        state.lastP = p ? p.split(",").map(Number) : null;
        state.lastPFor = slider;
        state.lastPWeights = weights;
        const region = (res.headers.get("x-tunableconv-region") || "").split(",").map(Number);
        if (region.length === 4) state.region = { top: region[0], left: region[1], height: region[2], width: region[3] };
        await showAfter(blob, state.paint.on ? "map" : (p || ""));
        const rt = performance.now() - t0;
        const compute = res.headers.get("x-tunableconv-compute-ms");
        const previewMs = $("after-preview").dataset.ms;
        $("timing").textContent = (previewMs && anchorsFit() ? `preview ${Math.round(Number(previewMs))} ms · ` : "") +
          `exact ${Math.round(rt)} ms round trip · ${Math.round(Number(compute))} ms model · ${res.headers.get("x-tunableconv-size")}`;
        const ready = state.paint.on ? "Ready. Paint over the image; the result follows each stroke." : "Ready. Drag the divider to compare.";
        status(state.note ? `${state.note} ${ready}` : ready);   // a note (e.g. a loaded map) outlives the result it asked for
        state.note = null;
        updateReadout();
      }
    } catch (err) {
      if (seq === state.seq) {
        status(err.message, "error");
        if (err.status === 404 && /image id/.test(err.message)) resetImage();
      }
    } finally {
      state.inflight -= 1;
    }
  }

  function showAfter(blob, p) {
    return new Promise((resolve) => {
      const img = $("after");
      const url = URL.createObjectURL(blob);
      img.onload = img.onerror = () => {
        if (state.afterUrl) URL.revokeObjectURL(state.afterUrl);
        state.afterUrl = url;
        img.classList.remove("stale");
        img.hidden = false;
        $("after-preview").hidden = true;
        state.results += 1;
        img.dataset.version = String(state.results);
        img.dataset.p = p;
        resolve();
      };
      img.src = url;
    });
  }

  // ---------------------------------------------------------------- contact sheet
  // The anchors as clickable tiles: a strip (a slider), a grid (two cube knobs; a row of grids
  // for three), a triangle (three knobs on the simplex). A click sets the knobs to the tile's.
  function renderSheet() {
    const box = $("sheet-box");
    const sheet = $("sheet");
    sheet.innerHTML = "";
    const a = state.anchors;
    if (!a || !anchorsFit()) {
      box.hidden = true;
      return;
    }
    const set = a.set;
    const names = set.axes;
    const label = (pt) => pt.map((v, k) => `${names[k]}=${fmt(v)}`).join(" · ");
    const tile = (k) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = set.tiles[k];
      img.alt = label(set.points[k]);
      img.title = `${label(set.points[k])}: click to use`;
      img.dataset.index = String(k);
      img.className = "sheet-tile";
      img.addEventListener("click", () => useAnchor(k));
      const cap = document.createElement("figcaption");
      cap.textContent = set.layout === "triangle" ? set.points[k].map((v) => fmt(v)).join(" / ") : label(set.points[k]);
      fig.append(img, cap);
      return fig;
    };
    if (set.layout === "line") {
      const strip = document.createElement("div");
      strip.className = "strip";
      set.tiles.forEach((_, k) => strip.appendChild(tile(k)));
      sheet.appendChild(strip);
    } else if (set.layout === "grid") {
      const n = set.values.length;
      const perGrid = names.length >= 2 ? n * n : n;
      const grids = document.createElement("div");
      grids.className = "grids";
      for (let g = 0; g < set.tiles.length / perGrid; g++) {
        const grid = document.createElement("div");
        grid.className = "grid";
        grid.style.gridTemplateColumns = `repeat(${names.length >= 2 ? n : n}, auto)`;
        for (let k = g * perGrid; k < (g + 1) * perGrid; k++) grid.appendChild(tile(k));
        grids.appendChild(grid);
      }
      sheet.appendChild(grids);
    } else {
      const m = set.values.length - 1;
      const tri = document.createElement("div");
      tri.className = "triangle";
      // spacing from the tiles' size (110 px high in style.css, plus border and caption), so
      // that neither tiles nor captions overlap whatever the image's aspect ratio
      const tileW = (110 * a.width) / a.height + 4;
      const tileH = 114 + 20;
      const side = tileW + 12;           // between neighbours in a row
      const rowH = tileH + 6;            // between rows
      tri.style.width = `${m * side + tileW}px`;
      tri.style.height = `${m * rowH + tileH}px`;
      set.points.forEach((pt, k) => {
        const fig = tile(k);
        // knob 0 at the top, knob 1 bottom left, knob 2 bottom right
        const x = (pt[0] * 0.5 + pt[2]) * m * side + tileW / 2;
        const y = (1 - pt[0]) * m * rowH;
        fig.style.left = `${x}px`;
        fig.style.top = `${y}px`;
        tri.appendChild(fig);
      });
      sheet.appendChild(tri);
    }
    $("sheet-title").textContent = set.layout === "line" ? `Along ${names[0]}` : `Settings of ${names.join(", ")}`;
    $("sheet-note").textContent = `the model at ${set.tiles.length} settings, computed once for this image; click one to use it`;
    box.hidden = false;
    markSheet();
  }

  function markSheet() {
    const u = currentU();
    document.querySelectorAll(".sheet-tile").forEach((img) => {
      const pt = state.anchors.set.points[Number(img.dataset.index)];
      img.classList.toggle("current", Boolean(u) && pt.every((v, k) => Math.abs(v - u[k]) < 1e-6));
    });
  }

  function useAnchor(k) {
    const set = state.anchors.set;
    const pt = set.points[k];
    if (state.paint.on) setPaint(false);
    if (set.control !== "knobs") {
      state.slider = pt[0];
      const input = $(`knob-${set.control}`);
      if (input) { input.value = String(pt[0]); $(`knob-${set.control}-out`).textContent = fmt(pt[0]); }
    } else {
      state.p = set.layout === "line" ? [pt[0], round6(1 - pt[0])] : pt.slice();
      syncKnobSliders();
    }
    knobsMoved();
  }

  // ---------------------------------------------------------------- paint the knob
  // The map holds the painted axis's value per pixel of the preview region (a slider's
  // position, or one knob's value); it is sent as a grey PNG (knob_map) with each request.
  function paintTargets() {
    const m = state.model;
    if (!m || m.num_params === 0) return [];
    if (sliderMode()) return [m.main_slider];
    if (m.domain === "cube") return m.knobs.map((k) => k.name);
    if (m.simplex && m.num_params === 2) return [m.knobs[0].name];
    return [];
  }

  function renderPaintCard() {
    const m = state.model;
    const targets = paintTargets();
    const sel = $("paint-target");
    sel.innerHTML = "";
    for (const t of targets) {
      const opt = document.createElement("option");
      opt.value = t;
      opt.textContent = t;
      sel.appendChild(opt);
    }
    let why = "";
    if (!m || m.num_params === 0) why = "This model has no knobs to paint.";
    else if (!m.knob_maps) why = `This model cannot take a knob per pixel: ${m.knob_maps_error}`;
    else if (!targets.length) why = "Painting sets one slider or one independent knob per pixel; this model's knobs are three or more weights on a simplex.";
    $("paint-toggle").disabled = Boolean(why);
    $("paint-note").textContent = why || "Paint where the knob should differ, e.g. one setting for a face and another for the sky. Export the map to use it with tunableconv restore --knob-map.";
    $("paint-target-name").textContent = targets.length === 1 ? targets[0] : "a knob";
  }

  function currentAxisValue(target) {
    const m = state.model;
    if (target === m.main_slider && sliderMode()) return state.slider;
    const i = m.knobs.findIndex((k) => k.name === target);
    return i >= 0 ? state.p[i] : 0;
  }

  function setPaint(on) {
    const P = state.paint;
    const m = state.model;
    if (on && (!state.image || !state.region)) {
      status("Pick an image first.", "error");
      $("paint-toggle").checked = false;
      return;
    }
    if (on && !P.on) {             // the result alone while painting; the divider comes back after
      P.splitBefore = state.split ?? 0.5;
      setSplit(0);
    } else if (!on && P.on) {
      setSplit(P.splitBefore ?? 0.5);
    }
    P.on = on;
    $("paint-toggle").checked = on;
    $("paint-controls").hidden = !on;
    $("compare").classList.toggle("painting", on);
    $("paint").hidden = !on;
    document.querySelectorAll("#knobs input, #triangle-box svg").forEach((el) => { el.disabled = on; el.style.pointerEvents = on ? "none" : ""; });
    if (on) {
      P.target = $("paint-target").value || paintTargets()[0];
      const v = currentAxisValue(P.target);
      const c = document.createElement("canvas");
      c.width = state.region.width;
      c.height = state.region.height;
      fillMap(c, v);
      P.canvas = c;
      P.value = clamp01(1 - v > 0.5 ? 1 : 0);   // a brush that differs from the start value
      $("brush-value").value = String(P.value);
      $("brush-value-out").textContent = fmt(P.value);
      drawMapOverlay();
    } else {
      P.canvas = null;
    }
    updateReadout();
    showPreview();
    scheduleRestore(0);
    void m;
  }

  function fillMap(canvas, value) {
    const ctx = canvas.getContext("2d");
    const g = Math.round(clamp01(value) * 255);
    ctx.fillStyle = `rgb(${g},${g},${g})`;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  // the map as u per 8-bit level for the preview: {levels, width, height, u(level)}
  function paintedU() {
    const P = state.paint;
    const a = state.anchors;
    if (!P.canvas || !a) return null;
    const { width, height } = P.canvas;
    const data = P.canvas.getContext("2d").getImageData(0, 0, width, height).data;
    const levels = new Uint8Array(width * height);
    for (let i = 0; i < levels.length; i++) levels[i] = data[i * 4];
    const base = currentU();
    const axis = a.set.control !== "knobs" ? 0 : Math.max(0, a.set.axes.indexOf(P.target));
    return { levels, width, height, u: (v) => base.map((x, k) => (k === axis ? v : x)) };
  }

  function drawMapOverlay() {
    const P = state.paint;
    const overlay = $("paint");
    if (!P.canvas) return;
    overlay.width = P.canvas.width;
    overlay.height = P.canvas.height;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    ctx.drawImage(P.canvas, 0, 0);
    overlay.classList.toggle("visible", $("show-map").checked);
  }

  function paintAt(ev) {
    const P = state.paint;
    const overlay = $("paint");
    const r = overlay.getBoundingClientRect();
    const x = (ev.clientX - r.left) * (P.canvas.width / r.width);
    const y = (ev.clientY - r.top) * (P.canvas.height / r.height);
    const radius = P.size / 2;
    const ctx = P.canvas.getContext("2d");
    const g = Math.round(P.value * 255);
    // inner radius below the outer one: a canvas gradient with r0 == r1 paints nothing (feather 0)
    const grad = ctx.createRadialGradient(x, y, radius * Math.min(1 - P.feather, 0.999), x, y, radius);
    grad.addColorStop(0, `rgba(${g},${g},${g},1)`);
    grad.addColorStop(1, `rgba(${g},${g},${g},0)`);
    ctx.fillStyle = grad;
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
    ctx.fill();
    drawMapOverlay();
  }

  function initPaint() {
    const overlay = $("paint");
    const P = state.paint;
    let last = 0;
    overlay.addEventListener("pointerdown", (ev) => {
      if (!P.on) return;
      ev.stopPropagation();
      P.drawing = true;
      overlay.setPointerCapture(ev.pointerId);
      paintAt(ev);
      showPreview();
    });
    overlay.addEventListener("pointermove", (ev) => {
      if (!P.on || !P.drawing) return;
      ev.stopPropagation();
      paintAt(ev);
      const now = performance.now();
      if (now - last > 40) { last = now; showPreview(); }    // ~25 previews a second while painting
    });
    const stop = () => {
      if (!P.drawing) return;
      P.drawing = false;
      showPreview();
      scheduleRestore();
    };
    overlay.addEventListener("pointerup", stop);
    overlay.addEventListener("pointercancel", stop);
    $("paint-toggle").addEventListener("change", (ev) => setPaint(ev.target.checked));
    $("paint-target").addEventListener("change", () => { if (P.on) { setPaint(false); setPaint(true); } });
    const bind = (id, key, digits) => $(id).addEventListener("input", (ev) => {
      P[key] = Number(ev.target.value);
      $(`${id}-out`).textContent = digits ? fmt(P[key], digits) : String(P[key]);
    });
    bind("brush-value", "value", 2);
    bind("brush-size", "size", 0);
    bind("brush-feather", "feather", 2);
    $("show-map").addEventListener("change", drawMapOverlay);
    $("map-fill").addEventListener("click", () => {
      fillMap(P.canvas, P.value);
      drawMapOverlay();
      showPreview();
      scheduleRestore(0);
    });
    $("map-export").addEventListener("click", async () => {
      const full = fullMapCanvas();
      const blob = await new Promise((res) => full.toBlob(res, "image/png"));
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `knob-map-${P.target}.png`;
      document.body.appendChild(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      status(`Exported ${a.download} (${full.width}×${full.height}, the whole image): tunableconv restore IN OUT ` +
        `--model ${state.model.name} --knob-map ${P.target}=${a.download}`);
    });
    $("map-load").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = "";
      if (!file || !P.canvas) return;
      try {
        const bitmap = await createImageBitmap(file);
        // a map covers the whole image: take the part under the preview region
        const img = state.image;
        const reg = state.region;
        const sx = bitmap.width / img.width;
        const sy = bitmap.height / img.height;
        const ctx = P.canvas.getContext("2d");
        ctx.drawImage(bitmap, reg.left * sx, reg.top * sy, reg.width * sx, reg.height * sy, 0, 0, P.canvas.width, P.canvas.height);
        const d = ctx.getImageData(0, 0, P.canvas.width, P.canvas.height);
        for (let i = 0; i < d.data.length; i += 4) {   // grey levels: the red channel (a grey PNG has R = G = B)
          d.data[i + 1] = d.data[i + 2] = d.data[i]; d.data[i + 3] = 255;
        }
        ctx.putImageData(d, 0, 0);
        drawMapOverlay();
        showPreview();
        scheduleRestore(0);
        state.note = `Loaded ${file.name} as the ${P.target} map.`;
        status(state.note);
      } catch (err) {
        status(`${file.name} is not an image the browser can read`, "error");
      }
    });
  }

  // the map over the whole image (the preview region's map pasted where the region lies, the
  // rest at the current value), at most 1024 px on its longer side
  function fullMapCanvas() {
    const P = state.paint;
    const img = state.image;
    const reg = state.region;
    const k = Math.min(1, 1024 / Math.max(img.width, img.height));
    const c = document.createElement("canvas");
    c.width = Math.max(1, Math.round(img.width * k));
    c.height = Math.max(1, Math.round(img.height * k));
    fillMap(c, currentAxisValue(P.target));
    c.getContext("2d").drawImage(P.canvas, reg.left * k, reg.top * k, reg.width * k, reg.height * k);
    return c;
  }

  async function mapRequest(full) {
    const P = state.paint;
    let c = full ? fullMapCanvas() : P.canvas;
    const k = Math.min(1, MAP_MAX_SIDE / Math.max(c.width, c.height));
    if (k < 1 && !full) {
      const small = document.createElement("canvas");
      small.width = Math.max(1, Math.round(c.width * k));
      small.height = Math.max(1, Math.round(c.height * k));
      small.getContext("2d").drawImage(c, 0, 0, small.width, small.height);
      c = small;
    }
    const base = sliderMode() ? {} : {};
    return { ...base, knob_map: c.toDataURL("image/png"), knob_map_target: P.target };
  }

  // ---------------------------------------------------------------- images
  // The "before" side: the stored image, or for a super-resolution model (scale > 1) its
  // bicubic upscale to the output's size (the floor the model is compared with).
  function setBefore() {
    if (!state.image) return;
    const scale = (state.model && state.model.scale) || 1;
    const up = scale > 1 ? `&upscale=${scale}` : "";
    $("before").src = `/api/images/${encodeURIComponent(state.image.id)}/image.png?region=preview${up}`;
    $("tag-before").textContent = scale > 1 ? `bicubic ×${scale}` : "before";
    $("tag-after").textContent = scale > 1 ? `${state.model.name} ×${scale}` : "after";
  }

  function setImage(info) {
    if (state.paint.on) setPaint(false);
    state.image = info;
    state.region = { top: info.preview.top, left: info.preview.left, height: info.preview.height, width: info.preview.width };
    const after = $("after");
    setBefore();
    after.hidden = true;            // until the first result for this image arrives
    after.removeAttribute("src");
    $("after-preview").hidden = true;
    $("compare").hidden = false;
    $("empty").hidden = true;
    const pv = info.preview;
    let text = `${info.name}: ${info.width}×${info.height}`;
    const orig = state.original;
    if (orig && info.id !== orig.id && (orig.width !== info.width || orig.height !== info.height)) {
      text += ` (the original is ${orig.width}×${orig.height})`;
    }
    const scale = (state.model && state.model.scale) || 1;
    if (scale > 1) {
      text += ` · live view: the central ${Math.min(info.height, Math.floor(state.config.preview_size / scale))} px ` +
        `square (or less) ×${scale}, at its real size; the download covers the whole image`;
    } else if (pv.cropped) {
      text += ` · live preview of the central ${pv.width}×${pv.height}; the download covers the whole image`;
    }
    const m = state.model;
    if (m && !m.tiling_exact && m.bytes_per_pixel) {
      const gb = (m.bytes_per_pixel * info.width * info.height) / 2 ** 30;
      text += ` · the full-resolution pass takes the whole image at once (about ${gb < 0.1 ? fmt(gb * 1024, 0) + " MB" : fmt(gb, 1) + " GB"} of memory)`;
    }
    $("image-info").textContent = text;
    scheduleRestore(0);
    requestAnchors();
  }

  function resetImage() {
    state.original = state.image = null;
    state.anchors = null;
    $("compare").hidden = true;
    $("empty").hidden = false;
    $("image-info").textContent = "";
    renderSheet();
  }

  async function useOriginal(info) {
    state.original = info;
    document.querySelectorAll(".samples button").forEach((b) => b.classList.toggle("active", b.dataset.name === info.name && info.source === "sample"));
    await applyDegradation();
  }

  async function upload(file) {
    if (!file) return;
    const limit = state.config ? state.config.max_upload_bytes : Infinity;
    if (file.size > limit) {
      status(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB: the limit is ${(limit / 1048576).toFixed(0)} MB`, "error");
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    if ($("shrink").checked) form.append("max_side", "1024");
    status(`Uploading ${file.name}…`, "busy");
    try {
      const info = await (await api("/api/images", { method: "POST", body: form })).json();
      await useOriginal(info);
    } catch (err) {
      status(err.message, "error");
    }
  }

  async function loadSamples() {
    const { samples } = await (await api("/api/samples")).json();
    const box = $("samples");
    box.innerHTML = "";
    for (const s of samples) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = s.name;
      b.dataset.name = s.name;
      b.disabled = !s.available;
      if (!s.available) b.title = "not installed (needs scikit-image)";
      b.addEventListener("click", async () => {
        status(`Loading ${s.name}…`, "busy");
        try {
          const info = await (await postJSON("/api/images/from-sample", { name: s.name })).json();
          await useOriginal(info);
        } catch (err) {
          status(err.message, "error");
        }
      });
      box.appendChild(b);
    }
  }

  async function applyDegradation() {
    const seq = ++state.degradeSeq;
    if (!state.original) return;
    const m = state.model;
    const label = $("degrade-case").value;
    if (!state.degraded || !m || !label) {
      setImage(state.original);
      return;
    }
    const seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
    status("Degrading…", "busy");
    try {
      const info = await (await postJSON(`/api/images/${encodeURIComponent(state.original.id)}/degrade`,
        { model: m.name, levels: label, seed })).json();
      if (seq === state.degradeSeq) setImage(info);
    } catch (err) {
      if (seq !== state.degradeSeq) return;
      status(err.message, "error");
      if (err.status === 404 && /image id/.test(err.message)) resetImage();
    }
  }

  // ---------------------------------------------------------------- export
  async function download() {
    if (!state.image || !state.model) return status("Pick an image first.", "error");
    const btn = $("download");
    btn.disabled = true;
    const m = state.model;
    const how = m.tiling_exact ? "in tiles" : "in one pass (this model cannot be tiled)";
    status(`Processing ${state.image.width}×${state.image.height} at full resolution ${how}…`, "busy");
    try {
      const body = { image_id: state.image.id, model: m.name, ...knobValues() };
      if (state.paint.on) Object.assign(body, await mapRequest(true));
      const res = await postJSON("/api/download", body);
      const blob = await res.blob();
      const cd = res.headers.get("content-disposition") || "";
      const name = /filename="([^"]+)"/.exec(cd);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = name ? name[1] : "restored.png";
      document.body.appendChild(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      status(`Downloaded ${a.download} (${res.headers.get("x-tunableconv-size")}, ${Math.round(Number(res.headers.get("x-tunableconv-compute-ms")))} ms).`);
    } catch (err) {
      status(err.message, "error");
    } finally {
      btn.disabled = false;
    }
  }

  async function sweep() {
    if (!state.image || !state.model) return status("Pick an image first.", "error");
    const m = state.model;
    const body = { image_id: state.image.id, model: m.name, steps: Number($("sweep-steps").value) || 5, with_input: true };
    if (sliderMode()) {
      body.slider = m.main_slider;
    } else if (m.main_slider) {
      body.slider = m.main_slider;
      body.calibrated = false;             // raw knobs: the slider's path, uncalibrated
    } else if (m.num_params > 1) {
      body.knob_index = Number($("sweep-knob").value || 0);
      if (!m.simplex) body.base = state.p.map(clamp01);
    }
    const btn = $("sweep");
    btn.disabled = true;
    status("Sweeping…", "busy");
    try {
      const blob = await (await postJSON("/api/sweep", body)).blob();
      if (state.sweepUrl) URL.revokeObjectURL(state.sweepUrl);
      state.sweepUrl = URL.createObjectURL(blob);
      $("sweep-img").src = state.sweepUrl;
      $("sweep-save").href = state.sweepUrl;
      $("sweep-box").hidden = false;
      status("Sweep ready.");
    } catch (err) {
      status(err.message, "error");
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- split view
  function setSplit(fraction) {
    const f = Math.min(1, Math.max(0, fraction));
    $("compare").style.setProperty("--split", `${(f * 100).toFixed(2)}%`);
    $("divider").setAttribute("aria-valuenow", String(Math.round(f * 100)));
    state.split = f;
  }

  function initCompare() {
    const box = $("compare");
    let dragging = false;
    const move = (ev) => {
      const r = box.getBoundingClientRect();
      setSplit((ev.clientX - r.left) / r.width);
    };
    box.addEventListener("pointerdown", (ev) => {
      if (state.paint.on) return;
      dragging = true;
      box.setPointerCapture(ev.pointerId);
      move(ev);
    });
    box.addEventListener("pointermove", (ev) => { if (dragging) move(ev); });
    const stop = () => { dragging = false; };
    box.addEventListener("pointerup", stop);
    box.addEventListener("pointercancel", stop);
    $("divider").addEventListener("keydown", (ev) => {
      const step = ev.shiftKey ? 0.1 : 0.02;
      if (ev.key === "ArrowLeft") setSplit((state.split ?? 0.5) - step);
      else if (ev.key === "ArrowRight") setSplit((state.split ?? 0.5) + step);
      else return;
      ev.preventDefault();
    });
    setSplit(0.5);
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    initCompare();
    initPaint();
    $("model-select").addEventListener("change", (ev) => selectModel(ev.target.value));
    $("raw-toggle").addEventListener("change", (ev) => {
      const m = state.model;
      const sl = mainSlider(m);
      if (state.paint.on) setPaint(false);
      state.raw = ev.target.checked || !sl;
      if (state.raw && sl) {
        // start the raw sliders where the calibrated slider was, so the image does not jump
        state.p = state.lastP && state.lastPFor === state.slider ? state.lastP.slice()
          : sl.start.map((a, i) => clamp01(a + state.slider * (sl.end[i] - a)));
      } else if (!state.raw && sl) {
        state.slider = sliderPositionOf(sl, state.p);
      }
      renderKnobs();
      renderSweepKnobs();
      renderPaintCard();
      scheduleRestore(0);
      requestAnchors();
    });
    $("file-input").addEventListener("change", (ev) => upload(ev.target.files[0]));
    const drop = $("drop-zone");
    drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      drop.classList.remove("over");
      if (ev.dataTransfer.files.length) upload(ev.dataTransfer.files[0]);
    });
    $("degrade-apply").addEventListener("click", () => {
      state.degraded = true;
      applyDegradation();
    });
    $("degrade-reset").addEventListener("click", () => {
      state.degraded = false;
      applyDegradation();
    });
    // once applied, another case or seed degrades again
    $("degrade-case").addEventListener("change", () => { if (state.degraded) applyDegradation(); });
    $("seed").addEventListener("change", () => { if (state.degraded) applyDegradation(); });
    $("download").addEventListener("click", download);
    $("sweep").addEventListener("click", sweep);

    Promise.all([loadModels(), loadSamples()])
      .then(() => status("Pick a sample photo or upload an image."))
      .catch((err) => status(err.message, "error"));
  }

  document.addEventListener("DOMContentLoaded", init);
})();
