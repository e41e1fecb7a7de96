// Opens one page in headless Chromium (Debian's /usr/bin/chromium) and prints, as JSON on
// stdout, the value the page's script stores in `window.result`. tests/it/browser.rs serves the
// page and makes every assertion; this file only drives the browser.
import { chromium } from "playwright-core";

const url = process.argv[2];
if (!url) {
  console.error("usage: node open-page.mjs URL");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (message) => console.error(`page: ${message.text()}`));
  await page.goto(url);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 20000 });
  console.log(JSON.stringify(await page.evaluate(() => window.result)));
} finally {
  await browser.close();
}
