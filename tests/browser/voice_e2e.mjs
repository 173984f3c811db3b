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
  // the speech model loads once the show is on air: the line says so until it is ready
  await page.waitForFunction(() => document.getElementById("voice-ready").textContent.startsWith("Voice commands are ready"),
                             null, { timeout: 120000 });
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
  // The idea is screened off the event loop, then it is in the round, or held for the streamer
  // (a soldier in a world without war), or (a round closing meanwhile) already on air. Follow it
  // through the show's own state, keeping every place it was seen for the report.
  const mine = (s) => ({
    round: (s.candidates || []).some((c) => c.author === "console:mic"),
    held: (s.pending || []).some((c) => c.author === "console:mic"),
    aired: (s.on_air && s.on_air.by === "console:mic") || (s.last && s.last.user === "console:mic"),
  });
  results.seen = [];
  const follow = async (want, ms) => {
    const until = Date.now() + ms;
    for (;;) {
      const s = await page.evaluate(async () => (await fetch("/api/state")).json());
      const m = mine(s);
      const where = m.round ? "round" : m.held ? "held" : m.aired ? "aired" : "nowhere";
      if (results.seen[results.seen.length - 1] !== where) results.seen.push(where);
      results.state = s;
      if (want.includes(where)) return where;
      if (Date.now() > until) throw new Error(`the idea was not seen in ${want.join("/")} within ${ms} ms (seen: ${results.seen.join(" > ")})`);
      await page.waitForTimeout(200);
    }
  };
  const first = await follow(["round", "held", "aired"], 90000);
  results.held = first === "held" ? 1 : 0;
  if (first === "held") {
    await page.waitForSelector("#pending li", { timeout: 30000 });  // the page lists what the state holds
    await page.click("#pending li .btn-ok");
    await follow(["round", "aired"], 30000);
  } else if (first === "round") {
    await page.waitForSelector("#candidates li.cand", { timeout: 30000 });
  }
} catch (e) {
  results.failed = String(e && e.stack || e);
} finally {
  writeFileSync(join(cfg.out, "voice-results.json"), JSON.stringify(results, null, 2));
  await browser.close();
}
process.exit(results.failed ? 1 : 0);
