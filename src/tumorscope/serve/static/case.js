"use strict";
// BraTS case viewer: send the case to /api/v1/predict-case, then draw axial, coronal and
// sagittal slices of the returned FLAIR volume with the regions coloured (toggles, sliders).
(() => {
  const $ = (id) => document.getElementById(id);
  const COLOURS = { 1: [60, 110, 255], 2: [40, 200, 80], 3: [235, 50, 50] };
  const ALPHA = 0.45;
  let chosen = [], vol = null;

  const drop = $("case-drop"), input = $("case-input");
  function choose(files) {
    chosen = Array.from(files || []);
    drop.querySelector("span").textContent = chosen.length ?
      `Selected: ${chosen.map((f) => f.name).join(", ")}` : "Drop the case's files";
  }
  function fail(msg) { $("case-error").textContent = msg; $("case-error").hidden = false; $("case-status").textContent = ""; }
  input.addEventListener("change", () => choose(input.files));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("dragging"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("dragging"); }));
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files));

  // which form field a file goes to: its BraTS suffix names the modality
  const FIELDS = [["t1ce", /(_t1ce|-t1c)\.nii(\.gz)?$/i], ["t1", /(_t1|-t1n)\.nii(\.gz)?$/i],
                  ["t2", /(_t2|-t2w)\.nii(\.gz)?$/i], ["flair", /(_flair|-t2f)\.nii(\.gz)?$/i]];
  function fieldOf(name) {
    if (/\.(zip|tar|tgz|tar\.gz)$/i.test(name)) return "archive";
    const hit = FIELDS.find(([, re]) => re.test(name));
    return hit ? hit[0] : null;
  }

  $("case-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("case-error").hidden = true;
    if (!chosen.length) { fail("Choose the case's files first."); return; }
    const body = new FormData();
    for (const f of chosen) {
      const field = fieldOf(f.name);
      if (!field) { fail(`${f.name}: not a BraTS modality file (t1, t1ce, t2, flair) or an archive`); return; }
      body.append(field, f, f.name);
    }
    $("case-submit").disabled = true;
    $("case-status").textContent = "Segmenting the case…";
    try {
      const resp = await fetch("/api/v1/predict-case", { method: "POST", body });
      const data = await resp.json().catch(() => ({ detail: `server answered ${resp.status}` }));
      if (!resp.ok) { fail(`Rejected (${resp.status}): ${data.detail}`); return; }
      show(data);
      $("case-status").textContent = `Done in ${(data.timing_ms.total / 1000).toFixed(1)} s.`;
    } catch (err) {
      fail(`Could not reach the server: ${err}`);
    } finally {
      $("case-submit").disabled = false;
    }
  });

  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

  function show(data) {
    const d = data.display;
    vol = { shape: d.shape, image: bytes(d.image_base64), labels: bytes(d.labels_base64) };
    const [nx, ny, nz] = d.shape;
    // start at the slice with the most tumour along each axis
    const best = [0, 0, 0], counts = [new Array(nx).fill(0), new Array(ny).fill(0), new Array(nz).fill(0)];
    for (let x = 0; x < nx; x++) for (let y = 0; y < ny; y++) for (let z = 0; z < nz; z++) {
      if (vol.labels[(x * ny + y) * nz + z]) { counts[0][x]++; counts[1][y]++; counts[2][z]++; }
    }
    counts.forEach((c, i) => { best[i] = c.indexOf(Math.max(...c)); });
    [["sagittal", nx, best[0]], ["coronal", ny, best[1]], ["axial", nz, best[2]]].forEach(([name, n, start]) => {
      const s = $(`slider-${name}`); s.max = String(n - 1); s.value = String(start);
    });
    $("case-id").textContent = data.case_id;
    const dl = $("case-volumes");
    dl.innerHTML = "";
    Object.entries(data.volumes_cm3).forEach(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = `${k} volume`;
      const dd = document.createElement("dd"); dd.textContent = `${v.toFixed(1)} cm³`;
      dl.append(dt, dd);
    });
    const seg = new Blob([bytes(data.segmentation_nifti_base64)], { type: "application/gzip" });
    const link = $("download-seg");
    link.href = URL.createObjectURL(seg);
    link.download = data.segmentation_filename;
    $("case-model").textContent = `Model ${data.model_id} · ${data.model_version}. ${data.disclaimer}`;
    $("case-result").hidden = false;
    drawAll();
  }

  function shown() {
    return new Set(Array.from(document.querySelectorAll("#region-toggles input:checked")).map((i) => Number(i.value)));
  }

  // one plane: rows/cols picked from the volume; drawn rotated so up is anterior/superior
  function drawPlane(name, w, h, at) {
    const canvas = $(`view-${name}`), ctx = canvas.getContext("2d");
    canvas.width = w; canvas.height = h;
    const img = ctx.createImageData(w, h), px = img.data, on = shown();
    for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
      const i = at(c, h - 1 - r), g = vol.image[i], lab = vol.labels[i];
      let rgb = [g, g, g];
      if (lab && on.has(lab)) rgb = rgb.map((v, k) => Math.round((1 - ALPHA) * v + ALPHA * COLOURS[lab][k]));
      const o = 4 * (r * w + c);
      px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.drawn = [...on].sort().join(",") || "none";
  }

  function drawAll() {
    if (!vol) return;
    const [nx, ny, nz] = vol.shape;
    const idx = (x, y, z) => (x * ny + y) * nz + z;
    const z = Number($("slider-axial").value), y = Number($("slider-coronal").value), x = Number($("slider-sagittal").value);
    drawPlane("axial", nx, ny, (c, r) => idx(c, r, z));
    drawPlane("coronal", nx, nz, (c, r) => idx(c, y, r));
    drawPlane("sagittal", ny, nz, (c, r) => idx(x, c, r));
  }

  ["axial", "coronal", "sagittal"].forEach((n) => $(`slider-${n}`).addEventListener("input", drawAll));
  document.querySelectorAll("#region-toggles input").forEach((i) => i.addEventListener("change", drawAll));
})();
