/**
 * The deployed configuration (wrangler.toml as it is, without `npm start`'s ALLOW_ANONYMOUS) refuses
 * clients without credentials.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RawClient } from "../support/raw-client";
import { startBroker } from "./global-setup";
import { REFUSAL_CLOSE_MS } from "../support/clients";

let broker: Awaited<ReturnType<typeof startBroker>>;
beforeAll(async () => {
  broker = await startBroker({});
}, 60000);
afterAll(async () => broker?.stop());

async function raw(version: 4 | 5): Promise<RawClient> {
  const ws = new WebSocket(`${broker.base.replace("http", "ws")}/mqtt`, "mqtt");
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  return new RawClient(
    {
      send: (d) => ws.send(d),
      close: () => ws.terminate(),
      onBytes: (cb) => ws.on("message", (d: Buffer) => cb(new Uint8Array(d))),
      onClose: (cb) => ws.on("close", cb),
    },
    version,
  );
}

describe("secure default", () => {
  it.each([4, 5] as const)("refuses an anonymous MQTT v%i client (v5 0x87, 3.1.1 5)", async (version) => {
    const client = await raw(version);
    const connack = await client.connect({ clientId: "anon" });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x87 : 5);
    await client.waitClosed(REFUSAL_CLOSE_MS);
  });
});

const countBy = (xs: number[]) => xs.reduce<Record<number, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});

describe("connection attempts per address", () => {
  it("lets a reconnect storm of 1,000 upgrades from one address through (CONNECT_LIMITER: 1,000 per 10 s)", async () => {
    // The refusal beyond the limit: test/workers/connect-limiter.test.ts (in-process, so that the
    // attempts fit in one 10 s window even on a busy machine; over real sockets they may not).
    const url = `${broker.base.replace("http", "ws")}/mqtt`;
    const statuses = await Promise.all(
      // 1,000 attempts in a burst from one address (as 1,000 devices behind one NAT after a deploy);
      // the test above used 2 of this window, so 998 are sure to fit in it.
      Array.from({ length: 998 }, async () => {
        const ws = new WebSocket(url, "mqtt");
        return new Promise<number>((resolve) => {
          ws.once("open", () => {
            ws.terminate();
            resolve(101);
          });
          ws.once("unexpected-response", (_req, res) => {
            resolve(res.statusCode ?? 0);
            ws.terminate();
          });
          ws.once("error", () => resolve(-1));
        });
      }),
    );
    // None is refused by the limiter (on a busy machine some may fail at the network level instead).
    expect(statuses.filter((s) => s === 429).length).toBe(0);
    expect(statuses.filter((s) => s === 101).length).toBeGreaterThan(0);
    console.log("1,000-upgrade burst, statuses:", JSON.stringify(countBy(statuses)));
  }, 120000);
});
