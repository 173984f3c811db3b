// The console's GPU budget card in a real browser (headless Chromium, the system's):
// log in, wait for the card to say why the sketch world is on air, read it.
// Called by tests/test_budget.py:
//   node tests/browser/budget_e2e.mjs '{"url": "...", "token": "...", "chromium": "..."}'
// Prints {"card": {...}, "errors": [...]} as JSON on stdout.
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const base = cfg.url.replace(/\/$/, "");
const errors = [];
const browser = await chromium.launch({
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let card = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  await page.goto(`${base}/`);
  await page.fill("#token", cfg.token);
  await page.fill("#name", "budget");
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.waitForFunction(() => !document.getElementById("budget-card").hidden
    && /sketch world is on air/.test(document.getElementById("budget-why").textContent), null, { timeout: 30000 });
  card = await page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    return {
      tag: text("budget-tag"), used: text("m-budget-text"), viewers: text("budget-viewers"),
      reset: text("budget-reset"), why: text("budget-why"),
      bar: document.getElementById("m-budget").style.width,
      world: document.getElementById("world-state").textContent,
    };
  });
} catch (e) {
  errors.push(`failed: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ card, errors }));
