/**
 * Security review #11: `$SYS/...` is written by the broker only. A client could publish retained
 * `$SYS` values that the broker then served as its own; every door is closed now (PUBLISH, topic
 * alias, will, HTTP publish), and the broker's own `$SYS` publisher keeps working.
 */
import { afterEach, describe, expect, it } from "vitest";
import { E2E_ADMIN_TOKEN, E2E_API_TOKEN } from "../e2e/global-setup";
import { brokerHttp, closeAll, connect, rawClient, recorder, REFUSAL_CLOSE_MS } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

/** Retained messages under a filter, as the admin API lists them. */
async function retained(filter: string): Promise<{ topic: string }[]> {
  const res = await fetch(`${brokerHttp()}/api/v1/retained?filter=${encodeURIComponent(filter)}`, {
    headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { retained: { topic: string }[] }).retained;
}

describe.each([4, 5] as const)("a client's PUBLISH to $SYS is refused, MQTT v%i", (version) => {
  it("a retained $SYS value from a client is neither stored nor served (v5 0x87) [MQTT311-3.3.5-2]", async () => {
    const base = `$SYS/broker/${uid("forged")}`;
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid("sys-pub") });
    raw.send({ cmd: "publish", topic: `${base}/q0`, payload: Buffer.from("999"), qos: 0, retain: true });
    raw.send({ cmd: "publish", topic: `${base}/q1`, payload: Buffer.from("999"), qos: 1, retain: true, messageId: 1 });
    raw.send({ cmd: "publish", topic: `${base}/q2`, payload: Buffer.from("999"), qos: 2, retain: true, messageId: 2 });
    const puback = await raw.next("puback");
    const pubrec = await raw.next("pubrec");
    // 5.0 says why; 3.1.1 has no code for it and completes the flow, dropping the message [MQTT311-3.3.5-2]
    expect([puback.reasonCode ?? 0, pubrec.reasonCode ?? 0]).toEqual(version === 5 ? [0x87, 0x87] : [0, 0]);
    // The acknowledgements come after routing would have stored them: nothing is retained.
    expect(await retained(`${base}/#`)).toEqual([]);
    // The connection stays usable.
    raw.send({ cmd: "pingreq" });
    await raw.next("pingresp");
  });

  it("class: a will on a $SYS topic is refused at CONNECT (v5 0x87, 3.1.1 return code 5)", async () => {
    const raw = await rawClient(version);
    const connack = await raw.connect({
      clientId: uid("sys-will"),
      will: { topic: `$SYS/broker/${uid("will")}`, payload: Buffer.from("x"), qos: 0, retain: true },
    });
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(version === 5 ? 0x87 : 5);
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });
});

describe("$SYS through the other doors", () => {
  it("class: a topic alias mapped to a $SYS topic is refused too (0x87)", async () => {
    const topic = `$SYS/broker/${uid("alias")}`;
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("sys-alias") });
    raw.send({
      cmd: "publish",
      topic,
      payload: Buffer.from("a"),
      qos: 1,
      retain: true,
      messageId: 1,
      properties: { topicAlias: 3 },
    });
    expect((await raw.next("puback")).reasonCode).toBe(0x87);
    raw.send({
      cmd: "publish",
      topic: "",
      payload: Buffer.from("b"),
      qos: 1,
      retain: true,
      messageId: 2,
      properties: { topicAlias: 3 },
    });
    expect((await raw.next("puback")).reasonCode).toBe(0x87);
    expect(await retained(topic)).toEqual([]);
  });

  it("class: HTTP publish to a $SYS topic answers 403 with a message", async () => {
    const topic = `$SYS/broker/${uid("http")}`;
    const res = await fetch(`${brokerHttp()}/api/v1/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${E2E_API_TOKEN}` },
      body: JSON.stringify({ topic, payload: "999", retain: true }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toMatch(/\$SYS/);
    expect(await retained(topic)).toEqual([]);
  });

  it("the broker's own $SYS publisher still publishes", async () => {
    const watcher = await connect(5);
    const rec = recorder(watcher);
    await watcher.subscribeAsync("$SYS/broker/clients/connected");
    // The retained copy may be an old tick's; a live one (RETAIN 0 to a subscriber [MQTT-3.3.1-12])
    // comes from a tick since, and counts at least the watcher itself.
    const deadline = Date.now() + 8000;
    let live;
    while (!(live = rec.messages.find((m) => !m.packet.retain)) && Date.now() < deadline)
      await rec.waitFor(rec.messages.length + 1, deadline - Date.now());
    expect(Number(live?.payload)).toBeGreaterThanOrEqual(1);
  });
});
