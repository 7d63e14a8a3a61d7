/**
 * The dashboard in a real headless Chromium (Debian's chromium, driven by playwright-core): every
 * view (traffic and charts, clients with search and paging, one client's page, subscriptions, the
 * retained browser, the in-page MQTT.js client), at 375 px and 1440 px. Counts, paging and the cost
 * of a refresh are checked on a broker of this file's own, whose contents the tests know exactly.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../support/until";
import { adminContext, hasChromium, inPageLogged, launchChromium } from "./browser";
import { E2E_ADMIN_TOKEN, E2E_USERS, startBroker } from "./global-setup";
import { brokerHttp, closeAll, connect, recorder } from "../support/clients";
import { uid } from "../support/ids";

/** Where the screenshots go (the README's pictures are copies of these). */
export const SCREENSHOTS = "test-results";
const WIDTHS = [375, 1440] as const;

let browser: Browser;
let own: Awaited<ReturnType<typeof startBroker>>;
const mine: MqttClient[] = [];

beforeAll(async () => {
  if (!hasChromium) return;
  [browser, own] = await Promise.all([
    launchChromium(),
    startBroker({ ALLOW_ANONYMOUS: "true", ADMIN_TOKEN: E2E_ADMIN_TOKEN, SYS_INTERVAL_SECONDS: "2" }),
  ]);
});

afterAll(async () => {
  await closeAll();
  await Promise.all(mine.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await browser?.close();
  await own?.stop();
});

/** An MQTT.js client of this file's own broker. */
async function ownClient(clientId: string, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`${own.base.replace("http", "ws")}/mqtt`, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    clientId,
    ...options,
  });
  mine.push(c);
  return c;
}

const adminGet = async (path: string) => {
  const res = await fetch(`${own.base}${path}`, { headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as any };
};

/** Opens this file's broker's dashboard at a width, recording every API call the page makes. */
async function openOwn(width: number) {
  const context = await adminContext(browser, { viewport: { width, height: 900 } });
  const page = await context.newPage();
  const calls: string[] = [];
  const elsewhere: string[] = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.host !== new URL(own.base).host) elsewhere.push(r.url());
    else if (url.pathname.startsWith("/api/")) calls.push(url.pathname + url.search);
  });
  expect((await page.goto(`${own.base}/dashboard`))?.status()).toBe(200);
  await page.locator("#updated", { hasText: "updated" }).waitFor({ timeout: 10000 });
  return { page, calls, elsewhere, close: () => context.close() };
}

/** Waits for the page's next overview refresh to have been applied. */
async function nextRefresh(page: Page): Promise<void> {
  await page.waitForResponse((r) => r.url().includes("/api/v1/overview?"), { timeout: 10000 });
  await page.waitForTimeout(50); // the response's JSON is applied on a later task
}

const cells = (page: Page, tbody: string) =>
  page.$$eval(`#${tbody} tr`, (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => (td as { textContent: string | null }).textContent ?? "")),
  );

/**
 * Layout faults: anything wider than the window (the outermost such elements are named), and every
 * visible button that the window or a clipping ancestor (overflow other than visible) cuts, horizontally.
 * A string, run in the page (this file is not type-checked against the DOM).
 */
const LAYOUT_FAULTS = `(() => {
  const faults = [];
  const width = document.documentElement.clientWidth;
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : "");
  if (document.documentElement.scrollWidth > width) {
    faults.push("page is " + document.documentElement.scrollWidth + " px wide in a " + width + " px window");
    for (const e of document.querySelectorAll("body *")) {
      const r = e.getBoundingClientRect();
      if (r.right > width + 0.5 && !(e.parentElement.getBoundingClientRect().right > width + 0.5)) faults.push(name(e) + " ends at " + Math.round(r.right));
    }
  }
  for (const b of document.querySelectorAll("button")) {
    const r = b.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue; // not displayed
    const what = "button " + JSON.stringify(b.textContent.slice(0, 40)) + " in " + name(b.closest("section, header"));
    if (r.left < -0.5 || r.right > width + 0.5) faults.push(what + " lies outside the window");
    for (let a = b.parentElement; a; a = a.parentElement) {
      if (getComputedStyle(a).overflowX === "visible") continue;
      const box = a.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5) faults.push(what + " is clipped by " + name(a));
    }
  }
  return faults;
})()`;
const layoutFaults = (page: Page): Promise<string[]> => page.evaluate(LAYOUT_FAULTS);

describe.skipIf(!hasChromium)("dashboard", () => {
  it("asks for the admin token (HTTP Basic) and refuses without it", async () => {
    const res = await fetch(`${brokerHttp()}/dashboard`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/Basic realm/);
    const page = await (
      await browser.newContext({ httpCredentials: { username: "admin", password: "wrong" } })
    ).newPage();
    const response = await page.goto(`${brokerHttp()}/dashboard`);
    expect(response?.status()).toBe(401);
  });

  it("shows a connected device; the in-page MQTT.js client logs in with a password over MQTT 5 and publishes at QoS 2", async () => {
    const context = await adminContext(browser, { viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const external: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(brokerHttp()) && !r.url().startsWith(brokerHttp().replace("http", "ws")))
        external.push(r.url());
    });
    const deviceId = uid("dash-device");
    const base = `users/alice/${deviceId}`; // the e2e ACL confines alice to users/alice/#
    const topic = `${base}/cmd`;
    const device = await connect(5, { clientId: deviceId });
    const rec = recorder(device);
    await device.subscribeAsync(topic, { qos: 2 });
    await device.publishAsync(`${base}/state`, "online", { qos: 1, retain: true });

    expect((await page.goto(`${brokerHttp()}/dashboard`))?.status()).toBe(200);
    await page.fill("#client-search", deviceId);
    await page.click("#client-search-go");
    await page.locator("#clients", { hasText: deviceId }).waitFor({ timeout: 10000 });

    // a wrong password is refused, and said so (MQTT 5 CONNACK 0x86)
    await page.fill("#username", "alice");
    await page.fill("#password", "not-her-password");
    await page.click("#connect");
    await page.locator("#log .bad", { hasText: "error" }).waitFor({ timeout: 10000 });
    // the right one connects over MQTT 5
    await page.fill("#password", E2E_USERS.alice);
    await page.selectOption("#protocol", "5");
    await page.click("#connect");
    await page.locator("#log", { hasText: "connected (MQTT 5.0)" }).waitFor({ timeout: 10000 });
    await page.fill("#sub-topic", `${base}/#`);
    await page.selectOption("#sub-qos", "2");
    await page.click("#subscribe");
    await page.locator("#log", { hasText: "subscribed (granted 2)" }).waitFor({ timeout: 10000 });
    await page.fill("#pub-topic", topic);
    await page.fill("#pub-payload", "hello from the dashboard");
    await page.selectOption("#pub-qos", "2");
    await page.click("#publish");
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("hello from the dashboard");
    expect(m.packet.qos).toBe(2);
    await page.locator("#log", { hasText: `published to ${topic} (QoS 2)` }).waitFor({ timeout: 10000 });
    // and the page sees the device's messages, at the QoS granted
    await device.publishAsync(`${base}/reply`, "hello back", { qos: 2 });
    await page.locator("#log", { hasText: "hello back (QoS 2)" }).waitFor({ timeout: 10000 });
    // the session is the user's: its username is what the admin API reports
    const clientId = await page.inputValue("#client-id");
    await page.fill("#client-search", clientId);
    await page.click("#client-search-go");
    await expect
      .poll(() => cells(page, "clients"), { timeout: 10000 })
      .toEqual([[clientId, "5.0", "alice", expect.any(String), "disconnect"]]);

    // disconnecting the device from the page
    await page.fill("#client-search", deviceId);
    await page.click("#client-search-go");
    await page.locator("#clients", { hasText: deviceId }).waitFor({ timeout: 10000 });
    const gone = new Promise<number>((resolve) => device.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    await page.click(`button[data-kick="${deviceId}"]`);
    expect(await gone).toBe(0x98);
    expect(external).toEqual([]); // no fetch leaves the broker's origin
    await context.close();
  });

  it("makes one API call per refresh, costing R + N Durable Object calls, and its counts match its tables (no $SYS, wildcards once)", async () => {
    // 6 subscriptions; 3 have a wildcard in their first two levels, so each is in all 8 shards: 3 x 8 + 3 = 27 index entries
    const device = await ownClient("counts-device");
    for (const f of ["+/a", "#", "x/+/y", "room/1/temp", "room/2/#", "$share/g/room/3"])
      await device.subscribeAsync(f, { qos: 1 });
    await device.publishAsync("room/1/temp", "21.5", { qos: 1, retain: true });
    await device.publishAsync("room/2/door", "open", { qos: 1, retain: true });
    // a $SYS watcher makes the broker retain its $SYS topics
    const watcher = await ownClient("counts-sys-watcher");
    const sys = recorder(watcher);
    await watcher.subscribeAsync("$SYS/#");
    await sys.waitFor(1, 10000);

    const { body } = await adminGet("/api/v1/overview");
    expect(body.cost).toEqual({ durableObjectCalls: 16 }); // 8 registry shards + 8 topic shards
    expect(body.counts).toMatchObject({ connected: 2, subscriptions: 7, subscriptionIndexEntries: 35, retained: 2 });
    expect(body.counts.dollarRetained).toBeGreaterThan(0);
    expect(body.subscriptions.subscriptions).toHaveLength(7); // the 6 and $SYS/#, each once
    expect(body.retained.items.map((r: { topic: string }) => r.topic)).toEqual(["room/1/temp", "room/2/door"]);

    const { page, calls, elsewhere, close } = await openOwn(1440);
    await expect.poll(() => page.textContent("#s-subs"), { timeout: 10000 }).toBe("7");
    expect(await page.textContent("#s-subs-note")).toBe("35 index entries in the shards");
    expect(await page.textContent("#s-retained")).toBe("2");
    expect(await page.textContent("#s-retained-note")).toMatch(/^\+ \d+ under \$ topics \(\$SYS\)$/);
    expect(await cells(page, "subs")).toHaveLength(7);
    expect(await cells(page, "retained")).toHaveLength(2);
    expect(await page.textContent("#cost")).toBe("Each refresh: 16 Durable Object calls.");
    // over several refreshes, the overview is the only call
    calls.length = 0;
    for (let i = 0; i < 3; i++) await nextRefresh(page);
    expect(new Set(calls.map((c) => c.split("?")[0]))).toEqual(new Set(["/api/v1/overview"]));
    expect(elsewhere).toEqual([]);
    await close();
    await Promise.all([device, watcher].map((c) => c.endAsync(true)));
    await until(
      async () => (await adminGet("/api/v1/overview")).body.counts.connected === 0,
      "the count clients to leave",
    );
  });

  it("searches clients by id prefix and pages through them by cursor (API and page)", async () => {
    // 57 clients: 55 share a prefix (more than one page of 50), plus ids ordered differently by code point and by UTF-16
    const ids = Array.from({ length: 55 }, (_, i) => `fleet-${String(i).padStart(3, "0")}`);
    const odd = ["zz-\uFFFD", "zz-\u{1F600}"];
    for (const id of [...ids, ...odd]) await ownClient(id);

    // the API: pages of 7 by cursor reach every client once, in order
    const seen: string[] = [];
    let after = "";
    for (let n = 0; n < 20; n++) {
      const { body } = await adminGet(`/api/v1/clients?limit=7&after=${encodeURIComponent(after)}`);
      seen.push(...body.clients.map((c: { clientId: string }) => c.clientId));
      if (!body.next) break;
      after = body.next;
    }
    expect(seen).toEqual([...ids, ...odd]);
    const { body: search } = await adminGet("/api/v1/clients?prefix=fleet-05");
    expect(search.clients.map((c: { clientId: string }) => c.clientId)).toEqual(ids.slice(50));

    // the page: a search shows only matches, and Next / Previous walk the pages
    const { page, close } = await openOwn(1440);
    await page.fill("#client-search", "fleet-");
    await page.click("#client-search-go");
    await expect
      .poll(() => page.textContent("#clients-count"), { timeout: 10000 })
      .toBe("55 of 57 connected clients match");
    await expect.poll(async () => (await cells(page, "clients")).map((r) => r[0])).toEqual(ids.slice(0, 50));
    expect(await page.textContent("#clients-page")).toBe("rows 1-50");
    await page.click("#clients-next");
    await expect
      .poll(async () => (await cells(page, "clients")).map((r) => r[0]), { timeout: 10000 })
      .toEqual(ids.slice(50));
    expect(await page.textContent("#clients-page")).toBe("rows 51-55");
    expect(await page.isDisabled("#clients-next")).toBe(true);
    await page.click("#clients-prev");
    await expect.poll(async () => (await cells(page, "clients")).length, { timeout: 10000 }).toBe(50);
    await page.fill("#client-search", "zz-\u{1F600}");
    await page.click("#client-search-go");
    await expect
      .poll(async () => (await cells(page, "clients")).map((r) => r[0]), { timeout: 10000 })
      .toEqual(["zz-\u{1F600}"]);
    await close();
    await Promise.all(mine.splice(0).map((c) => c.endAsync(true)));
    await until(
      async () => (await adminGet("/api/v1/overview")).body.counts.connected === 0,
      "the paged clients to leave",
    );
  });

  it("a client's page shows its subscriptions, queue, will; disconnects it and deletes its session", async () => {
    // an offline session with three QoS 1 messages queued
    const sleeper = await ownClient("sleeper", { clean: false, properties: { sessionExpiryInterval: 600 } });
    await sleeper.subscribeAsync("jobs/+", { qos: 1 });
    await sleeper.endAsync();
    const pub = await ownClient("job-publisher");
    for (const n of [1, 2, 3]) await pub.publishAsync(`jobs/${n}`, `job ${n}`, { qos: 1 });
    // a connected device with a will
    const device = await ownClient("willing", {
      will: { topic: "status/willing", payload: Buffer.from("gone"), qos: 1, retain: true },
    });
    await device.subscribeAsync("cmd/willing", { qos: 2, nl: true });

    const { page, close } = await openOwn(1440);
    await page.fill("#client-search", "sleeper");
    await page.click("#client-open"); // offline: not in the connected list, opened by its id
    await expect
      .poll(() => cells(page, "client-outbound"), { timeout: 10000 })
      .toEqual([1, 2, 3].map((n) => [`jobs/${n}`, "1", "queued", "", "5"]));
    expect(await cells(page, "client-subs")).toEqual([["jobs/+", "1", ""]]);
    expect(await page.textContent("#client-status")).toMatch(/^offline, session expires /);
    expect(await page.isDisabled("#client-disconnect")).toBe(true);
    await page.click("#client-delete");
    await expect
      .poll(() => page.textContent("#client-status"), { timeout: 10000 })
      .toBe('/api/v1/client: no session for client "sleeper"');
    expect((await adminGet("/api/v1/client?clientId=sleeper")).status).toBe(404);

    await page.fill("#client-search", "willing");
    await page.click("#client-search-go");
    await page.click("#clients button.link >> text=willing");
    await expect
      .poll(() => page.textContent("#client-will"), { timeout: 10000 })
      .toBe("on status/willing, QoS 1, retained, 4 bytes");
    expect(await cells(page, "client-subs")).toEqual([["cmd/willing", "2", "no local"]]);
    expect(await page.textContent("#client-info")).toContain("protocol5.0");
    const gone = new Promise<number>((resolve) => device.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    await page.click("#client-disconnect");
    expect(await gone).toBe(0x98);
    // its session ended with the connection (expiry 0), so the page says there is none
    await expect
      .poll(() => page.textContent("#client-status"), { timeout: 10000 })
      .toBe('/api/v1/client: no session for client "willing"');
    await close();
  });

  it("the retained browser filters, shows a payload as text, and deletes", async () => {
    const pub = await ownClient("retainer");
    const hostile = `<img src=x onerror="window.__pwned=1">\n${"long line ".repeat(40)}`;
    await pub.publishAsync("browse/a", hostile, { qos: 1, retain: true });
    await pub.publishAsync("browse/b", "bee", { qos: 1, retain: true });
    await pub.publishAsync("other/c", "sea", { qos: 1, retain: true });

    const { page, close } = await openOwn(1440);
    await page.fill("#retained-filter", "browse/#");
    await page.click("#retained-go");
    await expect
      .poll(async () => (await cells(page, "retained")).map((r) => r[0]), { timeout: 10000 })
      .toEqual(["browse/a", "browse/b"]);
    await page.click('#retained button:has-text("view")');
    await expect.poll(() => page.textContent("#payload-text")).toBe(hostile); // all of it, as text
    expect(await page.textContent("#payload-topic")).toBe("browse/a");
    expect(await page.evaluate("window.__pwned ?? null")).toBeNull();
    await page.click('#retained button[data-delete-retained="browse/a"]');
    await expect
      .poll(async () => (await cells(page, "retained")).map((r) => r[0]), { timeout: 10000 })
      .toEqual(["browse/b"]);
    const { body } = await adminGet("/api/v1/retained?filter=%23");
    expect(body.retained.map((r: { topic: string }) => r.topic)).toEqual(
      expect.arrayContaining(["browse/b", "other/c"]),
    );
    expect(body.retained.map((r: { topic: string }) => r.topic)).not.toContain("browse/a");
    await close();
  });

  for (const width of WIDTHS) {
    it(`every view fits a ${width} px window: nothing wider than the window, no button clipped; charts drawn; screenshot`, async () => {
      // content that used to push buttons out of view: long ids and topics
      const long = `a-very-long-client-id-${"x".repeat(120)}`;
      await ownClient(long);
      await ownClient("short");
      const pub = await ownClient("layout-pub");
      await pub.publishAsync(`layout/${"deep/".repeat(20)}topic`, "value", { qos: 1, retain: true });
      await pub.subscribeAsync(`layout/${"level/".repeat(20)}#`, { qos: 1 });
      await pub.publishAsync("layout/x", "traffic", { qos: 0 });

      const { page, close } = await openOwn(width);
      await page.fill("#retained-filter", "layout/#");
      await page.click("#retained-go");
      await page.locator("#clients", { hasText: long }).waitFor({ timeout: 10000 });
      await page.locator("#retained", { hasText: "deep/deep" }).waitFor({ timeout: 10000 });
      await page.click(`#clients button.link >> text=short`);
      await page.locator("#client-status", { hasText: "connected since" }).waitFor({ timeout: 10000 });
      await page.click('#retained button:has-text("view")');
      await page.locator("#payload-text", { hasText: "value" }).waitFor();
      await page.click("#connect");
      await inPageLogged(page, "connected (MQTT");
      // the charts have samples: a line per series
      await nextRefresh(page);
      await nextRefresh(page);
      expect(
        await page.$$eval("#chart-messages polyline", (ls) =>
          ls.map((l) => l.getAttribute("points")!.split(" ").length),
        ),
      ).toEqual([expect.any(Number), expect.any(Number)]);
      expect(await page.$$eval("svg polyline", (ls) => ls.length)).toBe(4);

      expect(await layoutFaults(page)).toEqual([]);
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: `${SCREENSHOTS}/dashboard-${width}.png`, fullPage: true });
      if (process.env.UPDATE_SCREENSHOTS)
        copyFileSync(`${SCREENSHOTS}/dashboard-${width}.png`, `docs/img/dashboard-${width}.png`);
      await close();
      await Promise.all(mine.splice(0).map((c) => c.endAsync(true)));
    });
  }
});
