// tunableconv web app: talks to the JSON/multipart API of tunableconv.app.server.
// No framework, nothing loaded from outside the server.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const DEBOUNCE_MS = 50;

  const state = {
    config: null,
    models: [],
    model: null,         // the selected model's description
    original: null,      // image info of the upload / sample
    image: null,         // image info shown (the original or a degraded copy)
    raw: false,          // raw p mode
    strength: 1,         // the strength slider (models with one)
    p: [],               // raw knob values (raw mode and models without strength)
    lastP: null,         // the p the server used for the last result
    inflight: false,
    pending: false,
    results: 0,          // results shown so far (data-version of #after)
    afterUrl: null,
    sweepUrl: null,
    degradeSeq: 0,
    degraded: false,     // show the original degraded as the selected model's file says (apply / clean)
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

  function selectModel(name, refresh = true) {
    const m = state.models.find((x) => x.name === name);
    if (!m || m.error) return;
    state.model = m;
    state.p = m.default_p.slice();
    state.strength = m.default_strength ?? 1;
    state.raw = !m.has_strength;
    $("raw-toggle").checked = false;
    $("raw-label").hidden = !m.has_strength;
    const bits = [m.summary];
    if (m.has_strength) bits.push(`strength slider: ${m.strength}${m.calibrated ? " (calibrated)" : ""}`);
    if (m.card && m.card.length) bits.push(m.card[0]);
    $("model-summary").textContent = bits.join(" · ");
    renderKnobs();
    renderSweepKnobs();
    renderDegradeCases();
    setBefore();
    if (refresh) scheduleRestore(0);
    // a degraded image belongs to the model that degraded it: degrade again as this one does
    // (or show the original when this one cannot)
    if (state.original && (state.degraded || (state.image && state.image.id !== state.original.id))) {
      applyDegradation();
    }
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
    if (m.has_strength && !state.raw) return { strength: state.strength, calibrated: true };
    return { p: state.p.map(clamp01) };
  }

  function moveOnSimplex(p, i, v) {
    // knob i set to v; the others share 1 - v in their current proportions
    const rest = p.reduce((acc, x, j) => acc + (j === i ? 0 : x), 0);
    const target = 1 - v;
    return p.map((x, j) => {
      if (j === i) return v;
      const share = rest > 1e-9 ? (x * target) / rest : target / (p.length - 1);
      return clamp01(Math.round(share * 1e6) / 1e6);
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

  function renderKnobs() {
    const box = $("knobs");
    box.innerHTML = "";
    const m = state.model;
    if (!m) return;
    if (m.num_params === 0) {
      box.innerHTML = '<p class="muted small">This model has no knobs: it is a fixed network.</p>';
      updateReadout();
      return;
    }
    const names = m.knobs.map((k) => k.name);
    if (m.has_strength && !state.raw) {
      const desc = `${m.strength}: s = 1 is all “${names[0]}”, s = 0 all “${names[1]}”.` +
        (m.calibrated ? " Calibrated: equal slider steps give even changes." : "");
      const { wrap, input, out } = sliderBlock({
        id: "knob-strength", label: "strength s", description: desc, value: state.strength,
        ends: [`← ${names[1]}`, `${names[0]} →`, m.knobs[1].description, m.knobs[0].description],
      });
      input.setAttribute("aria-label", "strength");
      input.addEventListener("input", () => {
        state.strength = Number(input.value);
        out.textContent = fmt(state.strength);
        updateReadout();
        scheduleRestore();
      });
      box.appendChild(wrap);
    } else {
      const sliders = [];
      m.knobs.forEach((k, i) => {
        const s = sliderBlock({ id: `knob-${i}`, label: k.name, description: k.description, value: state.p[i] });
        s.input.setAttribute("aria-label", k.name);
        s.input.addEventListener("input", () => {
          const v = Number(s.input.value);
          state.p = m.simplex ? moveOnSimplex(state.p, i, v) : state.p.map((x, j) => (j === i ? v : x));
          sliders.forEach((o, j) => {
            if (j !== i) o.input.value = String(state.p[j]);
            o.out.textContent = fmt(state.p[j]);
          });
          updateReadout();
          scheduleRestore();
        });
        sliders.push(s);
        box.appendChild(s.wrap);
      });
      if (m.simplex) {
        const note = document.createElement("p");
        note.className = "muted small";
        note.textContent = "These knobs sum to one: moving one rescales the others.";
        box.appendChild(note);
      }
    }
    updateReadout();
  }

  function updateReadout() {
    const m = state.model;
    let text = "–";
    if (m && m.num_params > 0) {
      if (m.has_strength && !state.raw) {
        text = state.lastP && state.lastPFor === state.strength
          ? `(${state.lastP.map((v) => fmt(v, 3)).join(", ")})`
          : `from s = ${fmt(state.strength)}`;
      } else {
        text = `(${state.p.map((v) => fmt(v, 3)).join(", ")})`;
      }
    }
    $("p-readout").textContent = text;
  }

  function renderSweepKnobs() {
    const sel = $("sweep-knob");
    const m = state.model;
    sel.innerHTML = "";
    const needKnob = Boolean(m && m.num_params > 1 && !m.has_strength);
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

  // ---------------------------------------------------------------- live restore
  let timer = null;
  function scheduleRestore(delay = DEBOUNCE_MS) {
    clearTimeout(timer);
    timer = setTimeout(requestRestore, delay);
  }

  async function requestRestore() {
    if (!state.image || !state.model) return;
    if (state.inflight) {           // at most one request in flight; the latest values win
      state.pending = true;
      return;
    }
    state.inflight = true;
    state.pending = false;
    const imageId = state.image.id;
    const strength = state.strength;
    const body = { image_id: imageId, model: state.model.name, region: "preview", format: "png", ...knobValues() };
    const t0 = performance.now();
    $("after").classList.add("stale");
    status("Restoring…", "busy");
    try {
      const res = await postJSON("/api/restore", body);
      const blob = await res.blob();
      if (state.image && state.image.id === imageId) {
        const p = res.headers.get("x-tunableconv-p");
        state.lastP = p ? p.split(",").map(Number) : null;
        state.lastPFor = strength;
        await showAfter(blob, p || "");
        const rt = performance.now() - t0;
        const compute = res.headers.get("x-tunableconv-compute-ms");
        $("timing").textContent = `${Math.round(rt)} ms round trip · ${Math.round(Number(compute))} ms model · ${res.headers.get("x-tunableconv-size")}`;
        status("Ready. Drag the divider to compare.");
        updateReadout();
      }
    } catch (err) {
      status(err.message, "error");
      if (err.status === 404 && /image id/.test(err.message)) resetImage();
    } finally {
      state.inflight = false;
      if (state.pending) requestRestore();
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
        state.results += 1;
        img.dataset.version = String(state.results);
        img.dataset.p = p;
        resolve();
      };
      img.src = url;
    });
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
    state.image = info;
    const before = $("before");
    const after = $("after");
    setBefore();
    after.hidden = true;            // until the first result for this image arrives
    after.removeAttribute("src");
    $("compare").hidden = false;
    $("empty").hidden = true;
    const pv = info.preview;
    let text = `${info.name}: ${info.width}×${info.height}`;
    const orig = state.original;
    if (orig && info.id !== orig.id && (orig.width !== info.width || orig.height !== info.height)) {
      text += ` (the original is ${orig.width}×${orig.height})`;
    }
    if (pv.cropped) text += ` · live preview of the central ${pv.width}×${pv.height}; the download covers the whole image`;
    $("image-info").textContent = text;
    scheduleRestore(0);
  }

  function resetImage() {
    state.original = state.image = null;
    $("compare").hidden = true;
    $("empty").hidden = false;
    $("image-info").textContent = "";
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
    status(`Processing ${state.image.width}×${state.image.height} at full resolution…`, "busy");
    try {
      const res = await postJSON("/api/download", { image_id: state.image.id, model: state.model.name, ...knobValues() });
      const blob = await res.blob();
      const cd = res.headers.get("content-disposition") || "";
      const m = /filename="([^"]+)"/.exec(cd);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = m ? m[1] : "restored.png";
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
    if (m.has_strength) {
      body.calibrated = !state.raw;         // raw mode: p = (s, 1 - s) uncalibrated
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
    $("model-select").addEventListener("change", (ev) => selectModel(ev.target.value));
    $("raw-toggle").addEventListener("change", (ev) => {
      const m = state.model;
      state.raw = ev.target.checked || !m.has_strength;
      if (state.raw && m.has_strength) {
        // start the raw sliders where the calibrated slider was, so the image does not jump
        state.p = state.lastP && state.lastPFor === state.strength ? state.lastP.slice() : [state.strength, 1 - state.strength];
      } else if (!state.raw && m.has_strength) {
        state.strength = clamp01(state.p[0]);
      }
      renderKnobs();
      renderSweepKnobs();
      scheduleRestore(0);
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
