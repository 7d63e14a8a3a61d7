/**
 * The dashboard in a real headless Chromium (Debian's chromium, driven by playwright-core): a device
 * connects and appears, the page's own MQTT client publishes, and the device receives it.
 */
import { mkdirSync } from "node:fs";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminContext, hasChromium, launchChromium } from "./browser";
import { brokerHttp, closeAll, connect, recorder, uid } from "./helpers";

/** Where the screenshot goes (the README's picture is a copy of one). */
export const SCREENSHOT = "test-results/dashboard.png";

let browser: Browser;

beforeAll(async () => {
  if (!hasChromium) return;
  browser = await launchChromium();
});

afterAll(async () => {
  await closeAll();
  await browser?.close();
});

describe.skipIf(!hasChromium)("dashboard", () => {
  it("asks for the admin token (HTTP Basic) and refuses without it", async () => {
    const res = await fetch(`${brokerHttp()}/dashboard`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/Basic realm/);
    const page = await (await browser.newContext({ httpCredentials: { username: "admin", password: "wrong" } })).newPage();
    const response = await page.goto(`${brokerHttp()}/dashboard`);
    expect(response?.status()).toBe(401);
  });

  it("shows a connected device, publishes from the page, and the device receives it", async () => {
    const context = await adminContext(browser, { viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const external: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(brokerHttp()) && !r.url().startsWith(brokerHttp().replace("http", "ws"))) external.push(r.url());
    });
    const deviceId = uid("dash-device");
    const topic = `dash/${deviceId}/cmd`;
    const device = await connect(5, { clientId: deviceId });
    const rec = recorder(device);
    await device.subscribeAsync(topic, { qos: 1 });
    await device.publishAsync(`dash/${deviceId}/state`, "online", { qos: 1, retain: true });

    const response = await page.goto(`${brokerHttp()}/dashboard`);
    expect(response?.status()).toBe(200);
    // the device appears among the connected clients, its subscription and retained topic too
    await page.locator("#clients", { hasText: deviceId }).waitFor({ timeout: 10000 });
    await page.locator("#subs", { hasText: topic }).waitFor({ timeout: 10000 });
    await page.locator("#retained", { hasText: `dash/${deviceId}/state` }).waitFor({ timeout: 10000 });

    // the page's MQTT client connects, subscribes, and publishes to the device
    await page.click("#connect");
    await page.locator("#log", { hasText: "connected" }).waitFor({ timeout: 10000 });
    await page.fill("#sub-topic", `dash/${deviceId}/#`);
    await page.click("#subscribe");
    await page.locator("#log", { hasText: "subscribed" }).waitFor();
    await page.fill("#pub-topic", topic);
    await page.fill("#pub-payload", "hello from the dashboard");
    await page.click("#publish");
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("hello from the dashboard");
    // and the page sees the device's messages
    await device.publishAsync(`dash/${deviceId}/reply`, "hello back", { qos: 1 });
    await page.locator("#log", { hasText: "hello back" }).waitFor();
    // message rates and counts are shown
    await expect.poll(() => page.textContent("#s-in-rate"), { timeout: 10000 }).not.toBe("-");
    // presence reaches the registry after CONNACK, so the next refresh may be the first to count the page's client
    await expect.poll(async () => Number(await page.textContent("#s-connected")), { timeout: 10000 }).toBeGreaterThanOrEqual(2);

    mkdirSync("test-results", { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // disconnecting the device from the page
    const gone = new Promise<number>((resolve) => device.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    await page.click(`button[data-kick="${deviceId}"]`);
    expect(await gone).toBe(0x98);
    expect(external).toEqual([]); // no fetch leaves the broker's origin
    await context.close();
  });
});
