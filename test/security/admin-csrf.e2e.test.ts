/**
 * Security issue #11, finding 2: cross-site request forgery against the admin API. A browser that
 * opened /dashboard holds the admin token as cached HTTP Basic credentials and would attach them to a
 * form POST or no-cors fetch that a page on another origin sends to the broker. Every state-changing
 * admin call must refuse such a request (403 with a message), while the dashboard's own button and
 * token-based clients (curl with a Bearer token) keep working.
 */
import { afterEach, describe, expect, it } from "vitest";
import { adminContext, browserPerFile, clickDisconnect, hasChromium, startOtherOrigin } from "../e2e/browser";
import { E2E_ADMIN_TOKEN } from "../e2e/global-setup";
import { brokerHttp, closeAll, connect, recorder } from "../support/clients";
import { uid } from "../support/ids";
import type { MqttClient } from "mqtt";

const browser = browserPerFile();
afterEach(closeAll);

const bearer = { authorization: `Bearer ${E2E_ADMIN_TOKEN}` };
const basic = { authorization: `Basic ${btoa(`admin:${E2E_ADMIN_TOKEN}`)}` };

async function describeClient(clientId: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${brokerHttp()}/api/v1/clients/${encodeURIComponent(clientId)}`, { headers: bearer });
  return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
}

/** A v5 client with a session that outlives its connection; records how it was disconnected. */
async function victim(clientId = uid("csrf-victim")) {
  const client = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
  const reasons: number[] = [];
  client.on("disconnect", (p) => reasons.push(p.reasonCode ?? -1));
  return { clientId, client, reasons };
}

/** The control: the client still has a working connection (its own message comes back through the broker). */
async function stillConnected(client: MqttClient, clientId: string): Promise<void> {
  const rec = recorder(client);
  await client.subscribeAsync(`csrf/${clientId}`, { qos: 1 });
  await client.publishAsync(`csrf/${clientId}`, "still here", { qos: 1 });
  expect((await rec.waitFor(1))[0].payload).toBe("still here");
  expect((await describeClient(clientId))?.connected).toBe(true);
}

describe("admin API: state-changing calls refuse cross-site requests (issue #11 finding 2)", () => {
  it("refuses Basic-authenticated POST/DELETE from another origin, or without the X-Requested-By header, with 403 and a message", async () => {
    const v = await victim();
    const retainedTopic = `csrf/${v.clientId}/retained`;
    await v.client.publishAsync(retainedTopic, "kept", { qos: 1, retain: true });
    const id = encodeURIComponent(v.clientId);
    const calls: [string, string][] = [
      ["POST", `/api/v1/clients/${id}/disconnect`],
      ["POST", `/api/v1/client/disconnect?clientId=${id}`],
      ["DELETE", `/api/v1/sessions/${id}`],
      ["DELETE", `/api/v1/session?clientId=${id}`],
      ["DELETE", `/api/v1/retained?filter=${encodeURIComponent(retainedTopic)}`],
    ];
    // What a browser sends for another page's form or fetch, with the admin's cached credentials.
    const forged: [Record<string, string>, RegExp][] = [
      [
        { ...basic, origin: "http://127.0.0.1:1", "x-requested-by": "x" },
        /Origin "http:\/\/127\.0\.0\.1:1" is not this origin/,
      ],
      [{ ...basic, origin: "null" }, /Origin "null"/],
      [{ ...basic, "sec-fetch-site": "same-site", "x-requested-by": "x" }, /Sec-Fetch-Site is "same-site"/],
      [{ ...basic, "sec-fetch-site": "cross-site" }, /Sec-Fetch-Site is "cross-site"/],
      [
        { ...basic, "content-type": "application/x-www-form-urlencoded" },
        /needs a Bearer token or the X-Requested-By header/,
      ],
    ];
    for (const [method, path] of calls) {
      for (const [headers, message] of forged) {
        const res = await fetch(`${brokerHttp()}${path}`, { method, headers });
        expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(403);
        expect(((await res.json()) as { error: string }).error).toMatch(message);
      }
    }
    await stillConnected(v.client, v.clientId);
    const kept = await fetch(`${brokerHttp()}/api/v1/retained?filter=${encodeURIComponent(retainedTopic)}`, {
      headers: basic,
    });
    expect(((await kept.json()) as { retained: unknown[] }).retained).toHaveLength(1);
    expect(v.reasons).toEqual([]);

    // The same call from this origin with the header passes (the dashboard's way); so does a Bearer token.
    const own = await fetch(`${brokerHttp()}/api/v1/client/disconnect?clientId=${id}`, {
      method: "POST",
      headers: { ...basic, origin: brokerHttp(), "sec-fetch-site": "same-origin", "x-requested-by": "dashboard" },
    });
    expect(own.status).toBe(200);
    const deleted = await fetch(`${brokerHttp()}/api/v1/retained?filter=${encodeURIComponent(retainedTopic)}`, {
      method: "DELETE",
      headers: bearer,
    });
    expect(await deleted.json()).toEqual({ deleted: 1 });
  });

  it("class: HTTP publish with the admin's Basic credentials refuses another origin; a Bearer backend still publishes", async () => {
    const v = await victim();
    const topic = `csrf/${v.clientId}/published`;
    const rec = recorder(v.client);
    await v.client.subscribeAsync(topic, { qos: 1 });
    const body = JSON.stringify({ topic, payload: "forged", qos: 1 });
    const json = { "content-type": "application/json" };
    for (const headers of [
      { ...basic, ...json, origin: "http://127.0.0.1:1" },
      { ...basic, ...json, "sec-fetch-site": "cross-site" },
      { ...basic, ...json },
    ]) {
      const res = await fetch(`${brokerHttp()}/api/v1/publish`, { method: "POST", headers, body });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(((await res.json()) as { error: string }).error).toMatch(/cross-site request refused/);
    }
    // Positive control, and what proves nothing forged arrived: the Bearer backend's message is the first.
    const ok = await fetch(`${brokerHttp()}/api/v1/publish`, {
      method: "POST",
      headers: { ...bearer, ...json },
      body: JSON.stringify({ topic, payload: "backend", qos: 1 }),
    });
    expect(ok.status).toBe(200);
    expect((await rec.waitFor(1)).map((m) => m.payload)).toEqual(["backend"]);
  });

  it.skipIf(!hasChromium)(
    "a page on another origin cannot disconnect a client with the admin's cached Basic credentials; the dashboard's own button can (0x98)",
    async () => {
      const v = await victim();
      const id = encodeURIComponent(v.clientId);
      const targets = [
        `${brokerHttp()}/api/v1/client/disconnect?clientId=${id}`,
        `${brokerHttp()}/api/v1/clients/${id}/disconnect`,
      ];
      // The attacker's page: a no-cors fetch with credentials, then an auto-submitted form POST.
      const evil = await startOtherOrigin({
        "/evil": `<!doctype html><form id="f" method="POST" action="${targets[1]}"><input name="a" value="b"></form>
<script>fetch(${JSON.stringify(targets[0])}, { method: "POST", mode: "no-cors", credentials: "include" }).finally(() => document.getElementById("f").submit());</script>`,
      });
      try {
        const context = await adminContext(browser());
        // The admin opens the dashboard: the browser now holds the token as Basic credentials.
        const dashboard = await context.newPage();
        expect((await dashboard.goto(`${brokerHttp()}/dashboard`))?.status()).toBe(200);
        await dashboard.locator("#clients td", { hasText: v.clientId }).first().waitFor({ timeout: 10000 });

        const page = await context.newPage();
        const answered = targets.map((url) =>
          page.waitForResponse((r) => r.url() === url && r.request().method() === "POST", { timeout: 10000 }),
        );
        await page.goto(`${evil.origin}/evil`);
        const responses = await Promise.all(answered);
        expect(responses.map((r) => r.status())).toEqual([403, 403]);
        expect(evil.hits).toContain("GET /evil");
        await stillConnected(v.client, v.clientId);
        expect(v.reasons).toEqual([]);

        // Positive control: the dashboard's own button, same origin, still disconnects it.
        const gone = new Promise<number>((resolve) => v.client.once("disconnect", (p) => resolve(p.reasonCode ?? -1)));
        await clickDisconnect(dashboard, v.clientId);
        expect(await gone).toBe(0x98);
        await context.close();
      } finally {
        await evil.close();
      }
    },
  );
});
