// End to end in a real browser: headless Chromium (the system's, never a
// download) driven by playwright-core against a running `streambot run`.
// Called by tests/test_console_browser.py:
//   node tests/browser/console_e2e.mjs '{"url": "...", "token": "...", "out": "DIR", "prompt": "..."}'
// Writes DIR/results.json and the screenshots; exits non-zero on a failed step.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const base = cfg.url.replace(/\/$/, "");
const results = { steps: [], errors: [], preview: {}, times: {} };
const t0 = Date.now();
const step = (name, extra = {}) => { results.steps.push({ name, at_ms: Date.now() - t0, ...extra }); };

const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

function watch(page, label) {
  page.on("pageerror", (e) => results.errors.push(`${label}: page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) results.errors.push(`${label}: ${r.status()} ${new URL(r.url()).pathname}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") results.errors.push(`${label}: console: ${m.text()}`);
  });
}

async function login(page, name) {
  await page.goto(`${base}/`);
  if (!page.url().endsWith("/login")) throw new Error(`not sent to the login page: ${page.url()}`);
  await page.fill("#token", cfg.token);
  await page.fill("#name", name);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.waitForFunction(() => document.getElementById("onair-text").textContent.length > 1);
}

const framesSeen = (page) => page.$eval("#preview", (img) => Number(img.dataset.frames || 0));

// The preview's pixels, from the <img> itself: mean brightness and spread. The page
// replaces the image's source with every frame, so a frame still decoding (width 0)
// is waited for first.
const previewStats = (page) => page.$eval("#preview", async (img) => {
  for (let i = 0; i < 50 && !(img.complete && img.naturalWidth > 0); i++) {
    await img.decode().catch(() => new Promise((r) => setTimeout(r, 20)));  // rejected when the source changed
  }
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sum2 = 0;
  const n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    sum += y; sum2 += y * y;
  }
  const mean = sum / n;
  return { width: c.width, height: c.height, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)) };
});

async function waitFrames(page, more, timeout = 15000) {
  const start = await framesSeen(page);
  await page.waitForFunction((n) => Number(document.getElementById("preview").dataset.frames || 0) >= n,
    start + more, { timeout });
}

try {
  // 1. desktop: log in, the preview arrives
  const desktop = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await desktop.newPage();
  watch(page, "desktop");
  await login(page, "e2e");
  step("logged in");
  const firstAt = Date.now();
  await waitFrames(page, 1);
  results.times.first_preview_ms = Date.now() - firstAt;
  const n0 = await framesSeen(page);
  await page.waitForTimeout(3000);
  results.preview.fps = ((await framesSeen(page)) - n0) / 3;
  results.preview.before = await previewStats(page);
  step("preview frames", { fps: results.preview.fps });

  // 2. force a prompt: on air in the page
  await page.fill("#force-text", cfg.prompt);
  const [forced] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/force") && r.request().method() === "POST"),
    page.click("#force-form button[type=submit]"),
  ]);
  const forceBody = await forced.json();
  if (forced.status() !== 200) throw new Error(`force: ${forced.status()} ${JSON.stringify(forceBody)}`);
  results.force_frame = forceBody.frame;
  const forcedAt = Date.now();
  await page.waitForFunction((p) => document.getElementById("onair-text").textContent === p, cfg.prompt);
  results.times.force_to_page_ms = Date.now() - forcedAt;
  results.onair_text = await page.textContent("#onair-text");
  results.onair_by = await page.textContent("#onair-by");
  step("forced prompt on air in the page");
  await page.waitForTimeout(4000);  // the world darkens; the preview shows it
  await waitFrames(page, 2);
  results.preview.after_force = await previewStats(page);
  await page.screenshot({ path: join(cfg.out, "desktop.png") });
  step("desktop screenshot");

  // 3. the kill switch: the slate at once, prompts closed, then back
  const [killed] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/kill-switch")),
    page.click("#kill"),
  ]);
  results.kill_frame = (await killed.json()).frame;
  const killedAt = Date.now();
  await page.waitForFunction(() => document.getElementById("air-text").textContent === "OFF AIR");
  results.times.kill_to_page_ms = Date.now() - killedAt;
  await waitFrames(page, 3);
  results.preview.slate = await previewStats(page);
  results.offair_banner = await page.isVisible("#offair-banner");
  results.lock_toggle_checked = await page.isChecked("#lock-toggle");
  await page.screenshot({ path: join(cfg.out, "desktop-offair.png") });
  await page.waitForTimeout(1500);  // long enough to find the slate in the recording
  step("kill switch on");
  const [back] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/kill-switch")),
    page.click("#kill"),
  ]);
  results.back_frame = (await back.json()).frame;
  await page.waitForFunction(() => document.getElementById("air-text").textContent === "LIVE");
  step("kill switch off");
  // the timeline shows who did it
  await page.waitForFunction(() => /e2e\s+kill switch off/.test(document.getElementById("timeline").textContent),
    null, { timeout: 10000 });
  results.timeline = await page.textContent("#timeline");
  results.html = await page.content();

  // the OBS overlay page, with the read-only link the console shares (no cookie: a fresh browser)
  const share = await page.evaluate(async () => (await fetch("/api/share")).json());
  const obs = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const overlay = await obs.newPage();
  watch(overlay, "overlay");
  await overlay.goto(share.overlay);
  await overlay.waitForFunction((p) => document.getElementById("prompt").textContent === p
    && !document.getElementById("overlay").hidden, cfg.prompt, { timeout: 15000 });
  results.overlay_prompt = await overlay.textContent("#prompt");
  await obs.close();
  step("OBS overlay page");

  // 4. a phone
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
  });
  const mobile = await phone.newPage();
  watch(mobile, "phone");
  await login(mobile, "phone");
  await waitFrames(mobile, 2);
  await mobile.waitForTimeout(1500);  // a health message or two for the sparklines
  await mobile.screenshot({ path: join(cfg.out, "phone.png") });
  await mobile.screenshot({ path: join(cfg.out, "phone-full.png"), fullPage: true });
  results.phone = await mobile.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    kill: document.getElementById("kill").getBoundingClientRect().toJSON(),
    force: document.getElementById("force-text").getBoundingClientRect().toJSON(),
    preview: document.getElementById("preview-box").getBoundingClientRect().toJSON(),
  }));
  step("phone screenshot");
  await desktop.close();
  await phone.close();
} catch (e) {
  results.failed = String(e && e.stack || e);
} finally {
  await browser.close();
  writeFileSync(join(cfg.out, "results.json"), JSON.stringify(results, null, 2));
}
process.exit(results.failed ? 1 : 0);
