/**
 * Broker bridges on the dashboard, in a real headless Chromium: a broker of this file's own bridges
 * to a real Mosquitto and to a fake remote broker that refuses the bridge's CONNECT with a hostile
 * Reason String. The page shows each bridge's state and counts, and the remote's text (which lands
 * in lastError) only as text: nothing in it runs (the same checks as test/security/dashboard-xss).
 */
import { createServer, type Server } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeStatus } from "../../src/bridge/bridge-client";
import { recorder } from "../support/clients";
import { uid } from "../support/ids";
import { startMosquitto, type Mosquitto } from "../support/mosquitto";
import { until } from "../support/until";
import { adminContext, browserPerFile, hasChromium, startOtherOrigin, watchPage } from "./browser";
import { E2E_ADMIN_TOKEN, startBroker } from "./global-setup";

const browser = browserPerFile();
let other: Awaited<ReturnType<typeof startOtherOrigin>>;
let mosquitto: Mosquitto;
let hostile: { port: number; server: Server };
let broker: Awaited<ReturnType<typeof startBroker>>;
const open: MqttClient[] = [];

/** Script that, if it ever ran, would leave every trace the test looks for. */
const ran = (tag: string) => `window.__pwned="${tag}";new WebSocket("${other.wsOrigin}/${tag}")`;
let reasonString: string;

/** A "broker" that answers every MQTT 5 CONNECT with CONNACK 0x87 (not authorized) and `reasonString`. */
async function startRefusingRemote(): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on("packet", (packet) => {
      if (packet.cmd !== "connect") return;
      const connack = { cmd: "connack", reasonCode: 0x87, sessionPresent: false, properties: { reasonString } };
      socket.end(mqttPacket.generate(connack as mqttPacket.IConnackPacket, { protocolVersion: 5 }));
    });
    socket.on("data", (d) => parser.parse(d));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as { port: number }).port, server };
}

beforeAll(async () => {
  if (!hasChromium) return;
  other = await startOtherOrigin();
  reasonString = `<script>${ran("bridge-error")}</script><img src=x onerror=alert(1)>`;
  [mosquitto, hostile] = await Promise.all([startMosquitto(), startRefusingRemote()]);
  const bridges = [
    {
      name: "floor",
      url: mosquitto.url,
      protocol: 5,
      clientId: uid("dash-bridge"),
      topics: [{ direction: "out", filter: "#", qos: 1, localPrefix: "to-floor/", remotePrefix: "from-edge/" }],
    },
    {
      name: "refuser",
      url: `mqtt://127.0.0.1:${hostile.port}`,
      protocol: 5,
      topics: [{ direction: "out", filter: "#", qos: 1, localPrefix: "to-refuser/" }],
    },
  ];
  broker = await startBroker({
    ALLOW_ANONYMOUS: "true",
    ADMIN_TOKEN: E2E_ADMIN_TOKEN,
    BRIDGES: JSON.stringify(bridges),
  });
}, 90000);

afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.stop();
  await mosquitto?.dispose();
  hostile?.server.close();
  await other?.close();
});

async function statuses(): Promise<BridgeStatus[]> {
  const res = await fetch(`${broker.base}/api/v1/bridges`, {
    headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` },
  });
  return ((await res.json()) as { bridges: BridgeStatus[] }).bridges;
}

async function client(url: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: uid("bd") });
  open.push(c);
  return c;
}

/** The bridges table as the page shows it: one array of cell texts per row. */
const bridgeRows = (page: Page) =>
  page.$$eval("#bridges tr", (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => (td as { textContent: string | null }).textContent ?? "")),
  );

describe.skipIf(!hasChromium)("broker bridges on the dashboard", () => {
  it("shows each bridge's state and counts, and a remote's hostile Reason String in lastError as text that runs nothing", async () => {
    // One message out through the Mosquitto bridge, so its row has a count to show.
    const remoteSub = await client(mosquitto.url);
    const got = recorder(remoteSub);
    await remoteSub.subscribeAsync("from-edge/#", { qos: 1 });
    await until(async () => (await statuses()).find((b) => b.name === "floor")?.state === "connected", "floor up");
    const local = await client(`${broker.base.replace("http", "ws")}/mqtt`);
    await local.publishAsync("to-floor/one", "1", { qos: 1 });
    await got.waitFor(1, 10000);
    const expectedError = `the remote refused the connection (code 135): "${reasonString}"`;
    await until(
      async () => (await statuses()).some((b) => b.name === "refuser" && b.lastError === expectedError),
      "the refusing remote's Reason String in lastError",
      20000,
      200,
    );
    await until(async () => (await statuses()).find((b) => b.name === "floor")?.sent === 1, "floor sent 1");

    other.hits.length = 0;
    const context = await adminContext(browser());
    const page = await context.newPage();
    const seen = watchPage(page, broker.base);
    expect((await page.goto(`${broker.base}/dashboard`))?.status()).toBe(200);
    await page.locator("#bridges-view").waitFor({ state: "visible", timeout: 10000 });
    // Literally: the whole error is one cell's text, so none of it became markup.
    await expect
      .poll(async () => (await bridgeRows(page)).find((r) => r[0] === "refuser")?.[2], { timeout: 15000 })
      .toBe(expectedError);
    const rows = await bridgeRows(page);
    // bridge, state, last error, queued, in, out, dropped, unmapped
    expect(rows.find((r) => r[0] === "floor")).toEqual(["floor", "connected", "", "0 (0 bytes)", "0", "1", "0", "0"]);
    expect(rows.find((r) => r[0] === "refuser")?.[1]).not.toBe("connected");
    expect(await page.locator("#bridges-count").textContent()).toBe("1 of 2 connected");
    expect(await page.locator("#bridges img, #bridges script").count()).toBe(0);
    // The control: two more refreshes rendered the table again; nothing injected ran.
    for (let i = 0; i < 2; i++)
      await page.waitForResponse((r) => r.url().includes("/api/v1/overview?"), { timeout: 10000 });
    await page.waitForTimeout(0);
    expect(await page.evaluate("window.__pwned ?? null")).toBeNull();
    expect(seen.dialogs).toEqual([]);
    expect(seen.elsewhere).toEqual([]);
    expect(other.hits).toEqual([]);
    await context.close();
  }, 60000);
});
