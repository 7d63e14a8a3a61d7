/** HTTP publish (`POST /api/v1/publish`, `/batch`) through the real Worker, received by real MQTT clients. */
import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { E2E_ADMIN_TOKEN, E2E_API_TOKEN, E2E_JWT_SECRET } from "./global-setup";
import { brokerHttp, closeAll, connect, connectRecording, recorder } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

async function post(path: string, body: unknown, token = E2E_API_TOKEN, contentType = "application/json") {
  const res = await fetch(`${brokerHttp()}${path}`, {
    method: "POST",
    headers: { "content-type": contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
}

describe("HTTP publish", () => {
  it("delivers a text message to an MQTT subscriber, with its v5 properties", async () => {
    const topic = `http/${uid()}/t`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const { status, body } = await post("/api/v1/publish", {
      topic,
      payload: "hello from http",
      qos: 1,
      properties: {
        contentType: "text/plain",
        payloadFormatIndicator: true,
        messageExpiryInterval: 60,
        responseTopic: "replies/x",
        correlationData: btoa("corr-1"),
        userProperties: { source: "http", tags: ["a", "b"] },
      },
    });
    expect(status).toBe(200);
    expect(body.matched).toBe(1);
    expect(body.id).toMatch(/^http:/);
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("hello from http");
    expect(m.packet.qos).toBe(1);
    const p = m.packet.properties!;
    expect(p.contentType).toBe("text/plain");
    expect(p.payloadFormatIndicator).toBe(true);
    expect(p.messageExpiryInterval).toBeLessThanOrEqual(60);
    expect(p.responseTopic).toBe("replies/x");
    expect(Buffer.from(p.correlationData!).toString()).toBe("corr-1");
    expect(p.userProperties).toEqual({ source: "http", tags: ["a", "b"] });
  });

  it("takes a base64 payload and a retained message that later subscribers receive", async () => {
    const topic = `http/${uid()}/retained`;
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const { status } = await post("/api/v1/publish", {
      topic,
      payload: bytes.toString("base64"),
      encoding: "base64",
      retain: true,
      qos: 1,
    });
    expect(status).toBe(200);
    const { rec } = await connectRecording(5);
    const sub = await connect(4);
    const r = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const [m] = await r.waitFor(1);
    expect(Buffer.from(m.packet.payload as Buffer)).toEqual(bytes);
    expect(m.packet.retain).toBe(true);
    expect(rec.messages).toHaveLength(0);
  });

  it("keeps a QoS 1 message for an offline persistent session, durable before it answers", async () => {
    const topic = `http/${uid()}/offline`;
    const clientId = uid("offline");
    const first = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();
    const { status, body } = await post("/api/v1/publish", { topic, payload: "while you were away", qos: 1 });
    expect(status).toBe(200);
    expect(body.matched).toBe(1);
    const { rec } = await connectRecording(5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("while you were away");
  });

  it("publishes a batch in order and answers per message", async () => {
    const base = `http/${uid()}`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(`${base}/#`, { qos: 1 });
    const messages = Array.from({ length: 20 }, (_, i) => ({ topic: `${base}/${i % 3}`, payload: String(i), qos: 1 }));
    const { status, body } = await post("/api/v1/publish/batch", { messages });
    expect(status).toBe(200);
    expect(body.results).toHaveLength(20);
    expect(body.results.every((r: { matched: number }) => r.matched === 1)).toBe(true);
    const got = await rec.waitFor(20);
    for (const t of [0, 1, 2]) {
      const order = got.filter((m) => m.topic === `${base}/${t}`).map((m) => Number(m.payload));
      expect(order).toEqual([...order].sort((a, b) => a - b)); // per-topic order kept
    }
  });

  it("answers matched 0 when nobody subscribes", async () => {
    const { status, body } = await post("/api/v1/publish", { topic: `http/${uid()}/nobody`, payload: "x" });
    expect(status).toBe(200);
    expect(body.matched).toBe(0);
  });

  it("refuses a missing or wrong token with 401", async () => {
    const none = await post("/api/v1/publish", { topic: "a/b" }, "");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/Bearer/);
    const wrong = await post("/api/v1/publish", { topic: "a/b" }, "not-the-token");
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toMatch(/token/);
  });

  it("accepts the admin token and a JWT, and applies the ACL to the JWT's user", async () => {
    expect((await post("/api/v1/publish", { topic: `http/${uid()}/admin` }, E2E_ADMIN_TOKEN)).status).toBe(200);
    const secret = new TextEncoder().encode(E2E_JWT_SECRET);
    const jwt = await new SignJWT({ sub: "alice" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(secret);
    expect((await post("/api/v1/publish", { topic: "users/alice/x" }, jwt)).status).toBe(200);
    const denied = await post("/api/v1/publish", { topic: "elsewhere/x" }, jwt);
    expect(denied.status).toBe(403);
    expect(denied.body.error).toMatch(/not authorized/);
    const granted = await new SignJWT({ sub: "g", mqtt: { publish: ["only/this"] } })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(secret);
    expect((await post("/api/v1/publish", { topic: "only/this" }, granted)).status).toBe(200);
    expect((await post("/api/v1/publish", { topic: "only/that" }, granted)).status).toBe(403);
  });

  it("refuses bad input with a 4xx naming what is wrong, and routes nothing of a bad batch", async () => {
    const topic = `http/${uid()}/bad`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic);
    const cases: [unknown, number, RegExp][] = [
      ["{not json", 400, /not valid JSON/],
      [{ payload: "x" }, 400, /topic: required/],
      [{ topic: "a/+/b" }, 400, /topic: wildcard/],
      [{ topic: "" }, 400, /topic: empty/],
      [{ topic, qos: 3 }, 400, /qos/],
      [{ topic, retain: "yes" }, 400, /retain/],
      [{ topic, payload: "%%%", encoding: "base64" }, 400, /base64/],
      [{ topic, payload: "x", encoding: "hex" }, 400, /encoding/],
      [
        { topic, payload: btoa("\xff\xfe"), encoding: "base64", properties: { payloadFormatIndicator: true } },
        400,
        /not UTF-8/,
      ],
      [{ topic, properties: { responseTopic: "a/#" } }, 400, /responseTopic/],
      [{ topic, properties: { messageExpiryInterval: -1 } }, 400, /messageExpiryInterval/],
      [{ topic, properties: { userProperties: { a: 1 } } }, 400, /userProperties/],
      [{ topic, properties: { userProperties: [["a"]] } }, 400, /userProperties/],
      [{ topic, properties: { userProperties: [["a", 1]] } }, 400, /userProperties/],
      [{ topic, properties: { userProperties: "a=1" } }, 400, /userProperties/],
      [{ topic, properties: { topicAlias: 3 } }, 400, /unknown property/],
      [{ topic, extra: 1 }, 400, /extra: unknown field/],
      [{ topic, payload: "x".repeat(17000) }, 413, /maximum packet size/],
    ];
    for (const [body, status, error] of cases) {
      const res = await post("/api/v1/publish", body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(status);
      expect(res.body.error).toMatch(error);
    }
    const batch = await post("/api/v1/publish/batch", { messages: [{ topic, payload: "ok" }, { topic: "a/#" }] });
    expect(batch.status).toBe(400);
    expect(batch.body.error).toMatch(/messages\[1\]\.topic/);
    expect((await post("/api/v1/publish/batch", { messages: [] })).status).toBe(400);
    const tooMany = Array.from({ length: 101 }, () => ({ topic }));
    expect((await post("/api/v1/publish/batch", tooMany)).status).toBe(413);
    expect((await post("/api/v1/publish", "topic=x", E2E_API_TOKEN, "text/plain")).status).toBe(415);
    // A marker on the same topic (one shard, in order) after every refusal: anything of the refused
    // requests that was routed reaches the subscriber before it.
    expect((await post("/api/v1/publish", { topic, payload: "marker" })).status).toBe(200);
    await rec.waitFor(1);
    expect(rec.messages.map((m) => m.payload)).toEqual(["marker"]); // nothing of the refused requests was routed
    const unknown = await fetch(`${brokerHttp()}/api/v1/nothing`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/no such endpoint/);
  });
});
