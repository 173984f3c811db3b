// The watch page in a real browser: headless Chromium (the system's, never a
// download) driven by playwright-core against a running `streambot demo`.
// Called by tests/test_console_browser.py:
//   node tests/browser/watch_e2e.mjs '{"url": ".../watch?token=...", "out": "DIR", "prompt": "...", "chromium": "..."}'
// Prints PLAYING once the stream plays (the test then types the prompt into the
// demo's terminal), writes DIR/results.json, exits non-zero on a failed step.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const base = new URL(cfg.url).origin;
const results = { steps: [], errors: [], times: {} };
const t0 = Date.now();
const step = (name, extra = {}) => { results.steps.push({ name, at_ms: Date.now() - t0, ...extra }); };

const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});

// What the <video> is doing: its clock, frames decoded and dropped, audio decoded.
const playback = (page) => page.$eval("#video", (v) => {
  const q = v.getVideoPlaybackQuality();
  return {
    time: v.currentTime, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, at: performance.now(),
    audio_bytes: v.webkitAudioDecodedByteCount || 0, muted: v.muted, paused: v.paused,
    width: v.videoWidth, height: v.videoHeight, fragments: Number(v.dataset.fragments || 0),
  };
});

// The picture the page plays, drawn onto a canvas: its mean brightness.
const luma = (page) => page.$eval("#video", (v) => {
  const c = document.createElement("canvas");
  c.width = 160; c.height = 90;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  return sum / (d.length / 4);
});

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => results.errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") results.errors.push(`console: ${m.text()}`); });
  page.on("response", (r) => {
    // the playlist is written a few seconds after the show starts: a 404 before that is expected
    if (r.status() >= 400 && !/\/watch\/hls\//.test(r.url())) results.errors.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });

  // 1. the link from the terminal: a viewer session, then the page
  await page.goto(cfg.url);
  await page.waitForURL(`${base}/watch`);
  step("watch page");

  // 2. hls.js loads the playlist, buffers segments, and the video plays
  await page.waitForFunction(() => {
    const v = document.getElementById("video");
    return v.readyState >= 3 && v.currentTime > 0.5 && Number(v.dataset.fragments || 0) >= 1;
  }, null, { timeout: 90000 });
  results.times.to_playing_ms = Date.now() - t0;
  await page.click("#sound");  // a user's click: sound on
  const a = await playback(page);
  await page.waitForTimeout(6000);
  const b = await playback(page);
  const wall = (b.at - a.at) / 1000;
  results.playback = {
    wall_s: wall, advanced_s: b.time - a.time, fps: (b.frames - a.frames) / wall, dropped: b.dropped - a.dropped,
    audio_bytes: b.audio_bytes, audio_growth: b.audio_bytes - a.audio_bytes, muted: b.muted, paused: b.paused,
    width: b.width, height: b.height, fragments: b.fragments,
  };
  results.luma_before = await luma(page);
  results.status = await page.textContent("#status");
  step("playing", results.playback);

  // 3. a prompt typed in the demo's terminal: on the page, and in the picture it plays
  console.log("PLAYING");
  await page.waitForFunction((p) => document.getElementById("onair").textContent === p, cfg.prompt,
    { timeout: 30000 });
  results.onair = await page.textContent("#onair");
  const typedAt = Date.now();
  results.luma_after = null;
  while (Date.now() - typedAt < 45000) {
    const l = await luma(page);
    if (l < results.luma_before - 25) { results.luma_after = l; break; }
    await page.waitForTimeout(500);
  }
  results.times.prompt_to_picture_ms = Date.now() - typedAt;
  if (results.luma_after === null) results.luma_after = await luma(page);
  const c = await playback(page);
  results.still_advancing = c.time > b.time + 1;
  await page.screenshot({ path: join(cfg.out, "watch.png") });
  step("prompt in the picture");

  // 4. the console links to the page
  await page.goto(`${base}/`);
  await page.waitForFunction(() => !document.getElementById("watch-link").hidden, null, { timeout: 15000 });
  results.console_link = await page.getAttribute("#watch-link", "href");
  step("console link");
  await context.close();
} catch (e) {
  results.failed = String(e && e.stack || e);
} finally {
  await browser.close();
  writeFileSync(join(cfg.out, "results.json"), JSON.stringify(results, null, 2));
}
process.exit(results.failed ? 1 : 0);
