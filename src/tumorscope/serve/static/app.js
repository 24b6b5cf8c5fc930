"use strict";
// tumorscope upload page: send the scan to /api/v1/predict, draw the outline on a canvas.
const $ = (id) => document.getElementById(id);
const form = $("upload-form"), input = $("file-input"), drop = $("drop-zone");
let result = null, scanImg = null, maskData = null, chosen = null;

function showError(msg) { $("error").textContent = msg; $("error").hidden = false; $("status").textContent = ""; }
function clearError() { $("error").hidden = true; $("error").textContent = ""; }
function choose(file) {
  chosen = file;
  drop.querySelector("span").textContent = file ? `Selected: ${file.name}` : "Drop a scan here";
}

input.addEventListener("change", () => choose(input.files[0] || null));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("dragging"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("dragging"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]); });

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  clearError();
  if (!chosen) { showError("Choose a scan file first."); return; }
  const body = new FormData();
  body.append("file", chosen, chosen.name);
  if ($("slice-input").value !== "") body.append("slice", $("slice-input").value);
  $("submit").disabled = true;
  $("status").textContent = `Analysing ${chosen.name}…`;
  try {
    const resp = await fetch("/api/v1/predict", { method: "POST", body });
    const data = await resp.json().catch(() => ({ detail: `server answered ${resp.status}` }));
    if (!resp.ok) { showError(`Rejected (${resp.status}): ${data.detail}`); return; }
    await show(data);
    $("status").textContent = `Done in ${Math.round(data.timing_ms.total)} ms.`;
  } catch (err) {
    showError(`Could not reach the server: ${err}`);
  } finally {
    $("submit").disabled = false;
  }
});

function loadImage(b64) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = `data:image/png;base64,${b64}`;
  });
}

async function maskPixels(b64) {
  const maskImg = await loadImage(b64);
  const c = document.createElement("canvas");
  c.width = maskImg.width; c.height = maskImg.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(maskImg, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

async function show(data) {
  result = data;
  scanImg = await loadImage(data.image_png_base64);
  const segments = data.segmentation !== false;  // a classifier has no mask head
  maskData = segments ? await maskPixels(data.mask_png_base64) : null;
  $("overlay-controls").hidden = !segments;
  $("download-mask").hidden = !segments;
  $("overlay").setAttribute("aria-label", segments ? "scan with the predicted tumour outlined" : "the scan");
  $("predicted-class").textContent = data.predicted_class === "no tumour"
    ? "no tumour found"
    : `${data.predicted_class} (${(100 * data.probabilities[data.predicted_class]).toFixed(1)}%)`;
  $("finding").textContent = data.message;
  const warning = $("ood-warning");
  warning.hidden = data.in_distribution;
  warning.textContent = data.in_distribution ? ""
    : `This image is unlike the training data (${data.ood_reasons.join("; ")}); the result is unreliable.`;
  const list = $("probabilities");
  list.innerHTML = "";
  Object.entries(data.probabilities).sort((a, b) => b[1] - a[1]).forEach(([name, p], i) => {
    const li = document.createElement("li");
    if (i === 0) li.className = "top";
    const pct = (100 * p).toFixed(1);
    li.innerHTML = `<span class="label"></span> <strong>${pct}%</strong>
      <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}"><span style="width:${pct}%"></span></div>`;
    li.querySelector(".label").textContent = name;
    li.querySelector(".bar").setAttribute("aria-label", `${name} probability`);
    list.appendChild(li);
  });
  const bb = data.bounding_box;
  const rows = segments ? [
    ["Tumour area", `${data.tumour_area_pixels} px` + (data.tumour_area_mm2 != null ? ` (${data.tumour_area_mm2.toFixed(1)} mm²)` : "")],
    ["Bounding box", bb ? `rows ${bb.row_min}–${bb.row_max}, cols ${bb.col_min}–${bb.col_max}` : "no tumour found"],
  ] : [["Outline", "none: this model classifies only"]];
  if (segments && data.outline) rows.push(["Outline as annotated in", data.outline]);
  rows.push(["Image size", `${data.shape[0]} × ${data.shape[1]}`]);
  if (data.slice_index != null) rows.push(["Slice", String(data.slice_index)]);
  const dl = $("measurements");
  dl.innerHTML = "";
  rows.forEach(([k, v]) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; dl.append(dt, dd); });
  if (segments) $("download-mask").href = `data:image/png;base64,${data.mask_png_base64}`;
  const json = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  $("download-json").href = URL.createObjectURL(json);
  $("model-info").textContent = `Model ${data.model_id} · ${data.model_version}. ${data.disclaimer}`;
  $("result").hidden = false;
  draw();
}

function draw() {
  if (!result) return;
  const canvas = $("overlay"), ctx = canvas.getContext("2d");
  canvas.width = scanImg.width; canvas.height = scanImg.height;
  ctx.drawImage(scanImg, 0, 0);
  const mode = document.querySelector("input[name=mode]:checked").value;
  const alpha = Number($("opacity").value) / 100;
  if (mode === "off" || !maskData) { canvas.dataset.drawn = "scan"; return; }
  const w = maskData.width, h = maskData.height, m = maskData.data;
  const on = (x, y) => x >= 0 && y >= 0 && x < w && y < h && m[4 * (y * w + x)] > 127;
  const over = ctx.getImageData(0, 0, w, h), px = over.data;
  const colour = [255, 200, 0];
  const thick = Math.max(1, Math.round(Math.max(w, h) / 300));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!on(x, y)) continue;
      let paint = mode === "filled";
      if (mode === "outline") {
        for (let d = 1; d <= thick && !paint; d++) paint = !on(x - d, y) || !on(x + d, y) || !on(x, y - d) || !on(x, y + d);
      }
      if (!paint) continue;
      const i = 4 * (y * w + x);
      for (let k = 0; k < 3; k++) px[i + k] = Math.round((1 - alpha) * px[i + k] + alpha * colour[k]);
    }
  }
  ctx.putImageData(over, 0, 0);
  canvas.dataset.drawn = mode;
}

document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", draw));
$("opacity").addEventListener("input", draw);
