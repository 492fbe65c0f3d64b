// Screenshots and page checks of polis-gateway in headless Chromium (Debian package).
//
//   node tests/browser/screenshots.mjs            (run by `make browser-check`)
//
// Starts the demo gateway (the built binary with config/demo.toml, on free loopback
// ports, its own temporary data directory), walks the SPID path as a person would
// (login page, mock IdP, each abilitazione step, riepilogo, adesione, outbox, area,
// an error page, logged out; then the help-desk console: an operator finds the person
// whose CP is locked, a missing reason, the unlock, the person's «Interventi
// dell'assistenza», an unlisted codice fiscale refused) and, for every page:
//   - writes PNGs at 1280 and 375 px wide to target/browser-screenshots/ (not committed);
//   - at 375 px checks document.documentElement.scrollWidth <= innerWidth;
//   - runs axe-core (wcag2a, wcag2aa, wcag21aa, wcag22aa): no violation allowed.
// First it proves both checks can fail on a deliberately broken fixture page served by
// this script (not by the gateway). Exits non-zero naming page + problem on a failure.
//
// Environment: POLIS_BIN (default $CARGO_TARGET_DIR or target, /debug/polis-gateway),
// CHROMIUM (default /usr/bin/chromium), SHOT_DIR (default target/browser-screenshots).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");
const bin = process.env.POLIS_BIN || join(targetDir, "debug/polis-gateway");
const shotDir = process.env.SHOT_DIR || join(root, "target/browser-screenshots");
const axeSource = readFileSync(join(here, "node_modules/axe-core/axe.min.js"), "utf8");
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"];
const WIDTHS = [1280, 375];

const problems = [];

/** A free loopback TCP port. */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createNetServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Polls `url` until it answers 200 (the process may still be starting). */
async function waitForHttp(url, proc, what) {
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer at ${url}`);
}

/** The two checks of one page at 375 px; returns the problems found. */
async function checkPage(page) {
  const found = [];
  await page.setViewportSize({ width: 375, height: 800 });
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) {
    found.push(`overflows horizontally at 375 px (scrollWidth ${scrollWidth} > ${innerWidth})`);
  }
  await page.addScriptTag({ content: axeSource }).catch(() => page.evaluate(axeSource));
  const violations = await page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: tags } });
    return r.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  }, AXE_TAGS);
  for (const v of violations) found.push(`axe ${v}`);
  return found;
}

/** Screenshots at both widths, then the checks; problems are recorded under `name`. */
async function visit(page, name) {
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(shotDir, `${name}-${width}.png`), fullPage: true });
  }
  const found = await checkPage(page);
  for (const f of found) problems.push(`${name} (${page.url()}): ${f}`);
  await page.setViewportSize({ width: 1280, height: 900 });
  console.log(`${found.length ? "FAIL" : "ok  "} ${name}`);
}

/** The broken fixture must fail both checks, or the checks prove nothing. */
async function selfTest(browser) {
  const server = createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html><head><title>Broken fixture</title></head><body>
<div style="width:2000px">wider than any phone</div>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<p style="color:#ccc;background:#fff">low contrast text</p></body></html>`);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const found = await checkPage(page);
  await page.close();
  server.close();
  const overflow = found.some((f) => f.startsWith("overflows"));
  const axe = found.some((f) => f.startsWith("axe "));
  if (!overflow || !axe) {
    throw new Error(`self-test: the broken fixture was not caught (overflow ${overflow}, axe ${axe}): ${found}`);
  }
  console.log(`ok   self-test: the broken fixture fails both checks (${found.length} problems)`);
}

/** Starts the demo gateway on free ports with its own data directory. */
async function startGateway() {
  const [gw, idp] = [await freePort(), await freePort()];
  const data = mkdtempSync(join(tmpdir(), "polis-browser-"));
  const env = {
    ...process.env,
    POLIS__DATA_DIR: data,
    POLIS__TXLOG__DIR: join(data, "txlog"),
    POLIS__SERVER__LISTEN: `127.0.0.1:${gw}`,
    POLIS__SERVER__PUBLIC_URL: `http://127.0.0.1:${gw}`,
    POLIS__MOCK_IDP__LISTEN: `127.0.0.1:${idp}`,
    POLIS__MOCK_IDP__PUBLIC_URL: `http://127.0.0.1:${idp}`,
    RUST_LOG: process.env.RUST_LOG || "warn",
  };
  const proc = spawn(bin, ["demo", "--config", "config/demo.toml"], { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
  const base = `http://127.0.0.1:${gw}`;
  await waitForHttp(`${base}/healthz`, proc, "gateway");
  await waitForHttp(`http://127.0.0.1:${idp}/healthz`, proc, "mock IdP");
  return { proc, base, data };
}

/** Fills the inputs named in `values` that the form has. */
async function fill(page, values) {
  for (const [name, value] of Object.entries(values)) {
    const field = page.locator(`[name="${name}"]`);
    if ((await field.count()) === 0) continue;
    const tag = await field.first().evaluate((e) => e.tagName);
    if (tag === "SELECT") await field.selectOption({ index: 1 });
    else await field.fill(value);
  }
}

async function submit(page, label) {
  await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: label, exact: true }).click()]);
  await page.waitForLoadState("load");
}

const REQUEST = {
  email: "mario.rossi@example.org",
  email_repeat: "mario.rossi@example.org",
  mobile: "+39 333 7654321",
  street: "Via dei Mille 5",
  postal_code: "20124",
  municipality: "Milano",
  province: "MI",
  nation: "Italia",
  doc_kind: "",
  doc_number: "CA98765ZZ",
  doc_issuer: "Comune di Milano",
  doc_issued_on: "2021-03-15",
  doc_expires_on: "2099-03-15",
};
const NEW_CP = "Scuola2026x";

/** The SPID path, page by page. */
async function walk(page, base) {
  await page.goto(`${base}/`);
  await visit(page, "01-home");
  await page.goto(`${base}/login`);
  await page.locator("details.spid-button > summary").click();
  await visit(page, "02-login");
  await Promise.all([page.waitForURL((u) => !u.href.startsWith(base)), page.locator(".spid-idp-button-link a").first().click()]);
  await visit(page, "03-mock-idp-login");
  await page.getByRole("button", { name: "Accedi" }).click();
  await page.waitForURL(`${base}/abilitazione/richiesta`);
  await visit(page, "04-richiesta");
  await fill(page, { ...REQUEST, email: "non-valida", email_repeat: "non-valida" });
  await submit(page, "Prosegui");
  // The refusal takes the focus (before anything else moves it) and links to the field.
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (focused !== "error-summary") problems.push(`05-richiesta-errori: the focus is on "${focused}", not the error summary`);
  if ((await page.locator('#error-summary a[href="#f-email"]').count()) !== 1) {
    problems.push("05-richiesta-errori: the error summary does not link to the e-mail field");
  }
  await visit(page, "05-richiesta-errori");
  await fill(page, REQUEST);
  await submit(page, "Prosegui");
  await page.waitForURL(`${base}/abilitazione/domanda`);
  await visit(page, "06-domanda");
  await fill(page, { answer: "Dell'Orto Verdì", answer_repeat: "Dell'Orto Verdì" });
  await page.locator("main form button[type=submit]").first().click();
  await page.waitForURL(`${base}/abilitazione/riepilogo`);
  await visit(page, "07-riepilogo");
  await submit(page, "Conferma");
  await page.waitForURL(`${base}/abilitazione/adesione`);
  await visit(page, "08-adesione");
  await submit(page, "Accetto");
  await page.waitForURL(`${base}/abilitazione/inviata`);
  await visit(page, "09-inviata");
  await page.goto(`${base}/demo/posta`);
  await visit(page, "10-outbox");
  // The newest message (the list is newest first).
  await page.locator("table a").first().click();
  await page.waitForLoadState("load");
  await visit(page, "11-outbox-message");
  const mail = await page.locator("pre").innerText();
  const cp = /Codice Personale temporaneo: ([A-Z0-9]{12})/.exec(mail)?.[1];
  if (!cp) throw new Error("no temporary CP in the outbox message");
  await page.goto(`${base}/abilitazione/cambio-cp`);
  await visit(page, "12-cambio-cp");
  await fill(page, { temp_cp: cp, new_cp: NEW_CP, new_cp_repeat: NEW_CP });
  await page.locator("main form button[type=submit]").first().click();
  await page.waitForURL(`${base}/abilitazione/completata`);
  await visit(page, "13-completata");
  await page.goto(`${base}/area-riservata`);
  await visit(page, "14-area");
  await page.goto(`${base}/`);
  await visit(page, "15-home-abilitato");
  // Five wrong CPs lock it: the help desk unlocks it below.
  for (let n = 0; n < 5; n++) {
    await page.goto(`${base}/area-riservata/cambio-cp`);
    await fill(page, { current_cp: "Sbagliato99x", new_cp: "Nuovo2026yy", new_cp_repeat: "Nuovo2026yy" });
    await page.locator("main form button[type=submit]").first().click();
    await page.waitForLoadState("load");
  }
  await page.goto(`${base}/login?level=9`);
  await visit(page, "16-errore");
  await page.goto(`${base}/pagina-che-non-esiste`);
  await visit(page, "17-non-trovata");
  await page.goto(`${base}/condizioni-di-utilizzo`);
  await visit(page, "17a-condizioni");
  await page.goto(`${base}/informativa-privacy`);
  await visit(page, "17b-informativa");
  await page.goto(`${base}/`);
  await page.getByRole("button", { name: "Esci", exact: true }).click();
  await page.waitForURL(`${base}/uscito`);
  await visit(page, "18-uscito");
}

/** A SPID login at the mock IdP as the test person `user` (codice fiscale). */
async function loginAs(page, base, user) {
  await page.goto(`${base}/login`);
  await page.locator("details.spid-button > summary").click();
  await Promise.all([page.waitForURL((u) => !u.href.startsWith(base)), page.locator(".spid-idp-button-link a").first().click()]);
  await page.locator(`input[name="user"][value="${user}"]`).check({ force: true });
  await page.getByRole("button", { name: "Accedi" }).click();
  await page.waitForURL((u) => u.href.startsWith(base) && !u.pathname.startsWith("/login"));
  await page.waitForLoadState("load");
}

const PERSON = "RSSMRA80A01H501U";
const OPERATOR = "BNCGLI85M52F205H";
const UNLISTED = "ESPSFO90E41A662F";

/** The help-desk console (config/demo.toml lists Giulia Bianchi as an operator). */
async function helpdesk(page, base) {
  await loginAs(page, base, OPERATOR);
  await page.goto(`${base}/assistenza`);
  await visit(page, "19-assistenza");
  await fill(page, { q: PERSON });
  await submit(page, "Cerca");
  await page.waitForURL((u) => u.pathname.startsWith("/assistenza/account/"));
  if ((await page.getByText("Bloccato", { exact: true }).count()) === 0) {
    problems.push("20-assistenza-account: the locked CP is not shown as locked");
  }
  const html = await page.content();
  if (html.includes("$argon2")) problems.push("20-assistenza-account: a hash on the page");
  await visit(page, "20-assistenza-account");
  await page.locator('form:has(input[name="action"][value="unlock_cp"]) button[type=submit]').click();
  await page.waitForLoadState("load");
  await visit(page, "21-assistenza-motivo-mancante");
  await page.locator('form:has(input[name="action"][value="unlock_cp"]) textarea').fill("Telefonata del titolare: identità verificata, CP dimenticato");
  await page.locator('form:has(input[name="action"][value="unlock_cp"]) button[type=submit]').click();
  await page.waitForURL((u) => u.search.includes("fatto=unlock_cp"));
  await visit(page, "22-assistenza-fatto");
  await loginAs(page, base, PERSON);
  await page.goto(`${base}/area-riservata`);
  if ((await page.getByRole("heading", { name: "Interventi dell'assistenza" }).count()) !== 1) {
    problems.push("23-area-interventi: no «Interventi dell'assistenza» in the personal area");
  }
  await visit(page, "23-area-interventi");
  await loginAs(page, base, UNLISTED);
  const refused = await page.goto(`${base}/assistenza`);
  if (refused.status() !== 403) problems.push(`24-assistenza-vietata: status ${refused.status()}, not 403`);
  await visit(page, "24-assistenza-vietata");
}

async function main() {
  mkdirSync(shotDir, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "polis-chromium-"));
  // A fresh profile (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  let gateway;
  try {
    await selfTest(browser);
    gateway = await startGateway();
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    await walk(page, gateway.base);
    await helpdesk(page, gateway.base);
  } finally {
    await browser.close();
    if (gateway) {
      gateway.proc.kill("SIGTERM");
      rmSync(gateway.data, { recursive: true, force: true });
    }
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(`screenshots in ${shotDir}`);
  if (problems.length) {
    console.error(`\n${problems.length} problem(s):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log("browser-check: every page fits 375 px and axe-core finds no violation");
}

main().catch((e) => {
  console.error(`browser-check: ${e.stack || e}`);
  process.exit(1);
});
