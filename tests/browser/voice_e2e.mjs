// Push-to-talk in a real browser: headless Chromium (the system's) with a fake
// microphone that plays a WAV file, driven by playwright-core against a
// running `streambot run`. Called by tests/test_console_voice.py:
//   node tests/browser/voice_e2e.mjs '{"url": "...", "token": "...", "out": "DIR", "wav": "FILE", "hold_ms": N}'
// Writes DIR/voice-results.json and a screenshot; exits non-zero on a failed step.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const base = cfg.url.replace(/\/$/, "");
const results = { errors: [] };

const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${cfg.wav}`],
});
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await context.grantPermissions(["microphone"], { origin: base });
  const page = await context.newPage();
  page.on("pageerror", (e) => results.errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") results.errors.push(`console: ${m.text()}`); });
  await page.goto(`${base}/`);
  await page.fill("#token", cfg.token);
  await page.fill("#name", "mic");
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.waitForFunction(() => document.getElementById("voice-ready").textContent.length > 1);
  results.ready = await page.textContent("#voice-ready");
  results.discord = await page.textContent("#voice-discord");

  // hold the button while the fake microphone plays the phrase, then let go
  const box = await page.locator("#ptt").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForFunction(() => document.getElementById("ptt").classList.contains("recording"));
  results.recording_label = await page.textContent("#ptt");
  await page.waitForTimeout(cfg.hold_ms);
  const uploaded = page.waitForResponse((r) => r.url().endsWith("/api/voice") && r.request().method() === "POST",
                                        { timeout: 120000 });
  await page.mouse.up();
  const upload = await uploaded;
  results.upload_status = upload.status();
  results.upload_type = upload.request().headers()["content-type"];
  await page.waitForSelector("#voice-heard:not([hidden])", { timeout: 120000 });
  results.heard_text = await page.textContent("#voice-text");
  results.heard_command = await page.textContent("#voice-command");
  await page.screenshot({ path: join(cfg.out, "voice.png") });

  // one click puts it in the round
  const confirmed = page.waitForResponse((r) => r.url().endsWith("/confirm"));
  await page.click("#voice-confirm");
  results.confirm_status = (await confirmed).status();
  await page.waitForFunction(() => document.getElementById("voice-status").textContent.length > 1);
  results.status = await page.textContent("#voice-status");
  // the idea is screened off the event loop, then the console lists it: in the round, or
  // held for the streamer (a soldier in a world without war), who approves it with one click
  await page.waitForSelector("#candidates li.cand, #pending li", { timeout: 30000 });
  results.held = await page.locator("#pending li").count();
  if (results.held) {
    await page.click("#pending li .btn-ok");
    await page.waitForSelector("#candidates li.cand", { timeout: 30000 });
  }
  results.state = await page.evaluate(async () => (await fetch("/api/state")).json());
} catch (e) {
  results.failed = String(e && e.stack || e);
} finally {
  writeFileSync(join(cfg.out, "voice-results.json"), JSON.stringify(results, null, 2));
  await browser.close();
}
process.exit(results.failed ? 1 : 0);
