// The connect limiter as wrangler.toml configures it (CONNECT_LIMITER), through the real /mqtt
// endpoint in-process: 1,000 upgrades per address per 10 s pass (a reconnect storm of 1,000 devices
// behind one NAT), the next is answered 429 with Retry-After: 10 (src/gateway/upgrade.ts).
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";

/** One upgrade attempt from `address`; a socket that opens is closed at once. */
async function attempt(address: string): Promise<Response> {
  const res = await SELF.fetch("http://broker/mqtt", {
    headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "mqtt", "CF-Connecting-IP": address },
  });
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000, "test");
  }
  return res;
}

describe("CONNECT_LIMITER", () => {
  it("lets 1,000 upgrades per address through in a 10 s window and answers 429 (Retry-After: 10) after", async () => {
    const limiter = env.CONNECT_LIMITER!;
    const address = `198.51.100.${Math.floor(Math.random() * 250) + 1}`;
    // Fixed windows: wait for a fresh one if this one has less than 5 s left, so the burst fits.
    const intoWindow = Date.now() % 10000;
    if (intoWindow > 5000) await new Promise((r) => setTimeout(r, 10000 - intoWindow + 50));
    const start = Date.now();
    // A real upgrade first, then the binding the endpoint asks (the same one) for the other 999:
    // upgrades one by one are too slow on a busy machine to fit 1,000 in a window.
    expect((await attempt(address)).status).toBe(101);
    const outcomes = await Promise.all(Array.from({ length: 999 }, () => limiter.limit({ key: address })));
    expect(outcomes.filter((o) => o.success).length).toBe(999);
    const over = await attempt(address);
    expect(Date.now() - start).toBeLessThan(5000); // the burst stayed in one window
    expect(over.status).toBe(429);
    expect(over.headers.get("Retry-After")).toBe("10");
    // Another address has its own budget.
    expect((await attempt("192.0.2.200")).status).toBe(101);
  });
});
