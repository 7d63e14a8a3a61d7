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

describe("connection attempts per address", () => {
  it("answers HTTP 429 beyond the CONNECT_LIMITER rate (300 per 10 s)", async () => {
    const url = `${broker.base.replace("http", "ws")}/mqtt`;
    const statuses = await Promise.all(
      // 650 attempts in a burst: even if the burst straddles two 10 s windows, at most 600 pass.
      Array.from({ length: 650 }, async () => {
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
    const limited = statuses.filter((s) => s === 429).length;
    expect(statuses.filter((s) => s === 101).length).toBeLessThanOrEqual(600);
    expect(limited).toBeGreaterThanOrEqual(50);
  });
});
