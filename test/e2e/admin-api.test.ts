/** The admin API through the real Worker: clients, sessions, retained messages, subscriptions. */
import { afterEach, describe, expect, it } from "vitest";
import { until } from "../support/until";
import { E2E_ADMIN_TOKEN, E2E_API_TOKEN } from "./global-setup";
import { brokerHttp, closeAll, connect, connectRecording, recorder, roundTrip } from "../support/clients";
import { uid } from "../support/ids";
import { at } from "../support/elements";

afterEach(closeAll);

async function admin(method: string, path: string, token = E2E_ADMIN_TOKEN) {
  const res = await fetch(`${brokerHttp()}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/**
 * The listing once `check` holds for it (presence is reported asynchronously, off the message path),
 * or the last one after 5 s, for the assertions to judge.
 */
async function listedWhen(check: (l: Record<string, any>[]) => boolean): Promise<Record<string, any>[]> {
  let listed: Record<string, any>[] = [];
  await until(async () => check((listed = await allClients())), "the client listing", 5000, 100).catch(() => undefined);
  return listed;
}

async function allClients(): Promise<Record<string, any>[]> {
  const out: Record<string, any>[] = [];
  let after = "";
  for (;;) {
    const { body } = await admin("GET", `/api/v1/clients?limit=1000&after=${encodeURIComponent(after)}`);
    out.push(...body.clients);
    if (!body.next) return out;
    after = body.next;
  }
}

describe("admin API", () => {
  it("refuses without the admin token, and the publish-only token is not enough", async () => {
    expect((await admin("GET", "/api/v1/clients", "")).status).toBe(401);
    expect((await admin("GET", "/api/v1/clients", E2E_API_TOKEN)).status).toBe(401);
    const basic = await fetch(`${brokerHttp()}/api/v1/clients`, {
      headers: { authorization: `Basic ${btoa(`admin:${E2E_ADMIN_TOKEN}`)}` },
    });
    expect(basic.status).toBe(200);
  });

  it("lists connected clients, paged, and forgets them when they leave", async () => {
    const prefix = uid("listed");
    const ids = [0, 1, 2, 3, 4].map((i) => `${prefix}-${i}`);
    const clients = await Promise.all(ids.map((clientId, i) => connect(i % 2 ? 4 : 5, { clientId })));
    const listed = await listedWhen((l) => ids.every((id) => l.some((c) => c.clientId === id)));
    const mine = listed.filter((c) => ids.includes(c.clientId));
    expect(mine.map((c) => c.clientId)).toEqual(ids);
    expect(mine[0]).toMatchObject({ version: 5, sessionPresent: false, expiryInterval: 0 });
    expect(at(mine, 1).version).toBe(4);
    expect(Date.parse(at(mine, 0).connectedAt)).toBeGreaterThan(Date.now() - 60000);
    // pages of two, in id order, without gaps or repeats
    const paged: string[] = [];
    let after = `${prefix}`;
    for (;;) {
      const { body } = await admin("GET", `/api/v1/clients?limit=2&after=${encodeURIComponent(after)}`);
      paged.push(
        ...body.clients.map((c: { clientId: string }) => c.clientId).filter((id: string) => id.startsWith(prefix)),
      );
      if (!body.next || !body.next.startsWith(prefix)) break;
      after = body.next;
    }
    expect(paged).toEqual(ids);
    await at(clients, 0).endAsync();
    const after0 = await listedWhen((l) => !l.some((c) => c.clientId === ids[0]));
    expect(after0.some((c) => c.clientId === ids[0])).toBe(false);
    expect((await admin("GET", "/api/v1/clients?limit=0")).status).toBe(400);
  });

  it("shows one session: subscriptions, queued and in-flight counts, version, connected since", async () => {
    const clientId = uid("shown");
    const c = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 120 } });
    await c.subscribeAsync({ "shown/a": { qos: 1 }, "shown/+/b": { qos: 0 } });
    const { status, body } = await admin("GET", `/api/v1/clients/${encodeURIComponent(clientId)}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      clientId,
      connected: true,
      protocolVersion: 5,
      expiryInterval: 120,
      queued: 0,
      inflight: 0,
    });
    expect(body.subscriptions.map((s: { filter: string }) => s.filter).sort()).toEqual(["shown/+/b", "shown/a"]);
    await c.endAsync();
    const publisher = await connect(5);
    for (let i = 0; i < 3; i++) await publisher.publishAsync("shown/a", `m${i}`, { qos: 1 });
    const offline = await admin("GET", `/api/v1/clients/${encodeURIComponent(clientId)}`);
    expect(offline.body).toMatchObject({ connected: false, queued: 3 });
    expect(Date.parse(offline.body.expiresAt)).toBeGreaterThan(Date.now());
    expect((await admin("GET", `/api/v1/clients/${uid("never")}`)).status).toBe(404);
  });

  it("disconnects a client (v5 DISCONNECT 0x98, will sent) and deletes a session", async () => {
    const clientId = uid("kicked");
    const watcher = await connect(5);
    const rec = recorder(watcher);
    await watcher.subscribeAsync(`will/${clientId}`);
    const victim = await connect(5, {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
      will: { topic: `will/${clientId}`, payload: Buffer.from("gone"), qos: 0, retain: false },
    });
    await victim.subscribeAsync(`kicked/${clientId}`, { qos: 1 });
    const reason = new Promise<number>((resolve) => victim.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    const kicked = await admin("POST", `/api/v1/clients/${encodeURIComponent(clientId)}/disconnect`);
    expect(kicked).toEqual({ status: 200, body: { clientId, disconnected: true } });
    expect(await reason).toBe(0x98);
    expect((await rec.waitFor(1))[0].payload).toBe("gone");
    expect((await admin("POST", `/api/v1/clients/${encodeURIComponent(clientId)}/disconnect`)).status).toBe(404);
    // the session survived the disconnect; deleting it removes it and its subscriptions
    expect((await admin("GET", `/api/v1/clients/${encodeURIComponent(clientId)}`)).body.connected).toBe(false);
    expect(await admin("DELETE", `/api/v1/sessions/${encodeURIComponent(clientId)}`)).toEqual({
      status: 200,
      body: { clientId, deleted: true },
    });
    expect((await admin("GET", `/api/v1/clients/${encodeURIComponent(clientId)}`)).status).toBe(404);
    const subs = await admin("GET", `/api/v1/subscriptions?filter=${encodeURIComponent(`kicked/${clientId}`)}`);
    expect(subs.body.subscriptions).toEqual([]);
    const { connack } = await connectRecording(5, {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
    });
    expect(connack.sessionPresent).toBe(false);
    expect((await admin("DELETE", `/api/v1/sessions/${uid("never")}`)).status).toBe(404);
  });

  it("lists and deletes retained messages by filter", async () => {
    const base = `adm/${uid()}`;
    const p = await connect(5);
    await p.publishAsync(`${base}/a`, "text", { qos: 1, retain: true });
    await p.publishAsync(`${base}/b/c`, Buffer.from([0xff, 0x00]), {
      qos: 1,
      retain: true,
      properties: { contentType: "bin" },
    });
    const listed = await admin("GET", `/api/v1/retained?filter=${encodeURIComponent(`${base}/#`)}`);
    expect(listed.status).toBe(200);
    expect(listed.body.retained).toMatchObject([
      { topic: `${base}/a`, payload: "text", encoding: "utf8", qos: 1, bytes: 4 },
      { topic: `${base}/b/c`, payload: "/wA=", encoding: "base64", bytes: 2, properties: { contentType: "bin" } },
    ]);
    const one = await admin("GET", `/api/v1/retained?filter=${encodeURIComponent(`${base}/#`)}&limit=1`);
    expect(one.body).toMatchObject({ truncated: true });
    expect(one.body.retained).toHaveLength(1);
    expect((await admin("DELETE", `/api/v1/retained?filter=${encodeURIComponent(`${base}/b/+`)}`)).body).toEqual({
      deleted: 1,
    });
    const after = await admin("GET", `/api/v1/retained?filter=${encodeURIComponent(`${base}/#`)}`);
    expect(after.body.retained.map((r: { topic: string }) => r.topic)).toEqual([`${base}/a`]);
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(`${base}/#`);
    await rec.waitFor(1);
    await roundTrip(sub); // retained messages go right after the SUBACK: all of them are in by now
    expect(rec.messages.map((m) => m.topic)).toEqual([`${base}/a`]);
    expect((await admin("GET", `/api/v1/retained?filter=${encodeURIComponent("a/#/b")}`)).status).toBe(400);
    expect((await admin("DELETE", "/api/v1/retained")).status).toBe(400);
  });

  it("lists subscriptions by filter and client, each once", async () => {
    const base = `subs/${uid()}`;
    const a = await connect(5, { clientId: uid("sa") });
    const b = await connect(5, { clientId: uid("sb") });
    await a.subscribeAsync({ [`${base}/x`]: { qos: 1 }, [`${base}/+`]: { qos: 0 } });
    await b.subscribeAsync({ [`$share/g/${base}/x`]: { qos: 1 }, "+/elsewhere": { qos: 0 } });
    const within = await admin("GET", `/api/v1/subscriptions?filter=${encodeURIComponent(`${base}/#`)}`);
    const seen = within.body.subscriptions
      .map((s: { clientId: string; filter: string }) => `${s.clientId} ${s.filter}`)
      .sort();
    expect(seen).toEqual(
      [
        `${a.options.clientId} ${base}/+`,
        `${a.options.clientId} ${base}/x`,
        `${b.options.clientId} $share/g/${base}/x`,
      ].sort(),
    );
    const wide = await admin("GET", `/api/v1/subscriptions?clientId=${encodeURIComponent(b.options.clientId!)}`);
    expect(wide.body.subscriptions.map((s: { filter: string }) => s.filter).sort()).toEqual(
      [`$share/g/${base}/x`, "+/elsewhere"].sort(),
    );
  });
});
