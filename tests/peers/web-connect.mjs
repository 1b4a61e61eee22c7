// Drives authplug's web page in headless Chromium (Debian's, through playwright-core), as an
// operator would: sign in with an admin token, pick a connector, enter its secrets, follow the
// provider's consent, and wait for the system to be listed as active. Prints one JSON line of
// what it saw; the Rust test asserts on it. Secrets come from the environment, never argv.
//
// PHASE=connect (default): a wrong token first, then the admin token; connect CONNECTOR as SYSTEM.
// PHASE=reconnect: SYSTEM is listed as needing re-authorisation; its Reconnect button, the
// secrets again, the consent again, and it is active.
//
// Environment: AUTHPLUG_URL, AUTHPLUG_TOKEN, CHROMIUM, SCREENSHOT, CONNECTOR, SYSTEM, PHASE, and
// SECRET_<name>=<value> for each input the form asks for.
import { chromium } from "playwright-core";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  // Without these, Chromium's own connections are refused by the closed network at every start.
  args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const seen = { origins: [], console: [], requests_failed: [] };
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(20000);
  // Every top-level navigation, redirects included (the consent is a chain of them).
  page.on("request", (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      const origin = new URL(request.url()).origin;
      if (seen.origins.at(-1) !== origin) seen.origins.push(origin);
    }
  });
  page.on("console", (message) => {
    if (message.type() === "error") seen.console.push(message.text());
  });
  page.on("requestfailed", (request) => {
    const url = new URL(request.url());
    seen.requests_failed.push(url.origin + url.pathname);
  });

  await page.goto(env.AUTHPLUG_URL + "/");
  const row = `#systems tr[data-system="${env.SYSTEM}"]`;
  if (env.PHASE !== "reconnect") {
    await page.fill("#token", "ap_not-a-token");
    await page.click("#signin");
    await page.waitForSelector("#message.error");
    seen.refused = (await page.textContent("#message")).trim();
  }
  await page.fill("#token", env.AUTHPLUG_TOKEN);
  await page.click("#signin");
  await page.waitForSelector(`#connector option[value="${env.CONNECTOR}"]`, { state: "attached" });
  if (env.PHASE === "reconnect") {
    seen.before = (await page.textContent(`${row} td.state`)).trim();
    seen.counts = (await page.textContent("#counts")).trim();
    await page.fill("#filter", "needs_reauth");
    seen.filtered = await page.$$eval("#systems tbody tr", (rows) => rows.filter((r) => !r.hidden).map((r) => r.dataset.system));
    await page.fill("#filter", "");
    await page.click(`${row} button:text("Reconnect")`);
  } else {
    await page.selectOption("#connector", env.CONNECTOR);
    await page.fill("#system", env.SYSTEM);
  }
  const inputs = await page.$$eval("#inputs input", (all) => all.map((i) => ({ name: i.name, type: i.type, required: i.required })));
  seen.inputs = inputs;
  for (const input of inputs) {
    const value = env["SECRET_" + input.name];
    if (value !== undefined) await page.fill(`#inputs input[name="${input.name}"]`, value);
  }
  seen.replace = await page.isChecked("#replace");
  await page.click("#connect");
  // Off to the provider and back to the page, which then lists the system as active.
  await page.waitForSelector(`${row} td.state-active`);
  seen.state = (await page.textContent(`${row} td.state`)).trim();
  // Then the page verifies the new credential and shows the outcome in the row.
  await page.waitForFunction((sel) => !/^\u2014$/.test(document.querySelector(sel)?.textContent.trim() || "\u2014"), `${row} td.verification`);
  seen.verification = (await page.textContent(`${row} td.verification`)).trim();
  seen.message = (await page.textContent("#message")).trim();
  if (env.PHASE === "reconnect") {
    // The row's Verify button asks again, and says what it found.
    await page.click(`${row} button:text("Verify")`);
    await page.waitForFunction(() => document.querySelector("#message").textContent.startsWith("Its credential"));
    seen.verified_again = (await page.textContent("#message")).trim();
  }
  seen.final_url = page.url();
  await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
} catch (error) {
  seen.error = String(error.message || error).split("\n")[0];
  seen.message = await page?.textContent("#message").catch(() => null);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
