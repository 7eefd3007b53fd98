// imgcdn playground: pick or upload an image, set delivery parameters, see the URL the
// server signs, the image it renders and what the answer's headers say. Every API call goes
// out with the key the user pasted, as a Bearer header (never a cookie: see
// docs/playground.md). Text from the server is only ever set as textContent.

const KEY_SLOT = "imgcdn.playground.key";
const DEBOUNCE_MS = 250;

// URL parameter (the form's field names, as docs/delivery.md writes them) -> the
// ImageTransform field POST /v1/image/deliver_url takes, and whether it is a number.
const TRANSFORM = {
  w: ["width", true],
  h: ["height", true],
  fit: ["fit", false],
  fmt: ["format", false],
  q: ["quality", true],
  dpr: ["dpr", true],
  blur: ["blur", true],
  sharpen: ["sharpen", true],
  g: ["gravity", false],
  rot: ["rotate", true],
  flip: ["flip", false],
  bg: ["background", false],
  crop: ["crop", false],
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, error) {
    const where = error.param ? ` (${error.param})` : "";
    super(`${status} ${error.code}: ${error.message}${where}`);
  }
}

function key() {
  return sessionStorage.getItem(KEY_SLOT) || "";
}

// One API call: relative paths, so the page works under any prefix the server is mounted at.
async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${key()}`, ...(init.headers || {}) };
  const response = await fetch(path, { ...init, headers, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body.error || { code: "error", message: "no answer" });
  }
  return body;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

async function loadAssets(selected) {
  const list = await api("v1/image/list?limit=1000");
  const select = $("asset");
  const keep = selected || select.value;
  select.replaceChildren(
    ...list.items.map((item) => new Option(`${item.id} (${item.width}x${item.height})`, item.id)),
  );
  if (list.items.some((item) => item.id === keep)) select.value = keep;
}

async function upload() {
  const file = $("file").files[0];
  if (!file) throw new Error("choose a file to upload first");
  const form = new FormData();
  form.append("file", file);
  form.append("filename", file.name.replace(/[\\/\x00-\x1f\x7f-\x9f]/g, "_") || "upload");
  const stored = await api("v1/image/upload", { method: "POST", body: form });
  await loadAssets(stored.id);
}

function transform(overrides = {}) {
  const out = {};
  const fields = new FormData($("params"));
  for (const [param, [name, numeric]] of Object.entries(TRANSFORM)) {
    const raw = param in overrides ? overrides[param] : String(fields.get(param) || "").trim();
    if (raw === "") continue;
    // A number the browser cannot read goes as typed: the server's 400 then names the field.
    out[name] = numeric && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return out;
}

async function deliveryUrl(overrides) {
  const body = { image_id: $("asset").value, transform: transform(overrides) };
  const made = await api("v1/image/deliver_url", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return made.url;
}

// The variant itself, fetched (not only shown) so its bytes and headers can be read. The
// path is fetched from this origin even when IMGCDN_PUBLIC_URL names a CDN: a signature
// covers the path and query, not the host. no-store: every render asks the server, so
// X-Cache says what the server's variant cache did, not what the browser's kept. Accept is
// what Chromium's <img> sends, so fmt=auto picks what an <img> would get (fetch's is */*).
const IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

async function fetchVariant(url) {
  const parsed = new URL(url, document.baseURI);
  const response = await fetch(parsed.pathname + parsed.search, {
    cache: "no-store",
    headers: { Accept: IMAGE_ACCEPT },
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.error || { code: "error", message: url });
  }
  const blob = await response.blob();
  return {
    blob,
    bytes: blob.size,
    format: (response.headers.get("Content-Type") || "").split(";")[0],
    timing: response.headers.get("Server-Timing") || "",
    cache: response.headers.get("X-Cache") || "",
  };
}

async function showVariant(img, facts, variant) {
  const previous = img.src;
  img.src = URL.createObjectURL(variant.blob);
  if (previous.startsWith("blob:")) URL.revokeObjectURL(previous);
  await img.decode().catch(() => {}); // a format this browser cannot draw still shows facts
  const shown = {
    bytes: String(variant.bytes),
    format: variant.format,
    dimensions: img.naturalWidth ? `${img.naturalWidth}x${img.naturalHeight}` : "?",
    "server-timing": variant.timing,
    "x-cache": variant.cache,
  };
  facts.replaceChildren();
  for (const [name, value] of Object.entries(shown)) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    dd.dataset.fact = name;
    facts.append(dt, dd);
  }
}

// Each render has a number: an answer that comes back after a newer render started is
// dropped, so fast typing never leaves an older image under the newer parameters.
let renders = 0;

async function render() {
  const mine = ++renders;
  if (!key() || !$("asset").value) return;
  const url = await deliveryUrl({});
  const variant = await fetchVariant(url);
  if (mine !== renders) return;
  const link = $("url");
  link.href = url;
  link.textContent = url;
  await showVariant($("result"), $("facts"), variant);
}

let compares = 0;

async function compare() {
  const mine = ++compares;
  if (!$("asset").value) throw new Error("choose or upload an image first");
  const sides = ["a", "b"].map(async (side) => {
    const url = await deliveryUrl({ fmt: $(`${side}-fmt`).value, q: $(`${side}-q`).value });
    return [side, await fetchVariant(url)];
  });
  const done = await Promise.all(sides);
  if (mine !== compares) return;
  for (const [side, variant] of done) {
    const figure = $(`side-${side}`);
    await showVariant(figure.querySelector("img"), figure.querySelector("dl"), variant);
  }
}

// Every action reports its failure in the page (role=alert), never as an unhandled error.
function guarded(action) {
  return async (event) => {
    if (event) event.preventDefault();
    try {
      await action();
      showError(null);
    } catch (error) {
      showError(error);
    }
  };
}

let pending = 0;
function renderSoon() {
  clearTimeout(pending);
  pending = setTimeout(guarded(render), DEBOUNCE_MS);
}

function start() {
  $("key").value = key();
  $("key-form").addEventListener(
    "submit",
    guarded(async () => {
      sessionStorage.setItem(KEY_SLOT, $("key").value.trim());
      $("key-state").textContent = "in use for this tab";
      await loadAssets();
      await render();
    }),
  );
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_SLOT);
    $("key").value = "";
    $("asset").replaceChildren();
    $("key-state").textContent = "forgotten";
  });
  $("refresh").addEventListener("click", guarded(loadAssets));
  $("upload").addEventListener("click", guarded(async () => {
    await upload();
    await render();
  }));
  $("asset").addEventListener("change", renderSoon);
  $("params").addEventListener("input", renderSoon);
  $("params").addEventListener("submit", guarded(render));
  $("compare").addEventListener("submit", guarded(compare));
  if (key()) guarded(loadAssets)().then(renderSoon);
}

start();
