/**
 * Shared subscriptions keep exactly-once and lose nothing when a member leaves [MQTT-4.8.2]:
 * a QoS 2 message sent to one member never reaches another, and a message handed back for another
 * member stays in its session until the hand-over succeeds.
 */
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { configFor } from "../../src/config";
import { sessionStub, topicShardStub } from "../../src/env";
import { counters } from "../../src/observability/counters";
import { shardForTopic } from "../../src/topics/shard-rule";
import type { RawClient } from "../support/raw-client";
import { until } from "../support/until";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

const persistent = { clean: false, properties: { sessionExpiryInterval: 300 } };

async function member(
  clientId: string,
  filter: string,
  qos: 1 | 2,
  connect: Record<string, unknown> = {},
): Promise<RawClient> {
  const c = await rawClient(5);
  await c.connect({ clientId, ...connect });
  await c.subscribe(filter, qos);
  return c;
}

let packetIds = 0;
/** Publishes and completes the publisher's side of the flow (the message is then in a member's session). */
async function publish(pub: RawClient, topic: string, payload: string, qos: 1 | 2): Promise<void> {
  const messageId = ++packetIds;
  pub.send({ cmd: "publish", topic, payload: Buffer.from(payload), qos, messageId });
  if (qos === 1) return void (await pub.next("puback"));
  await pub.next("pubrec");
  pub.send({ cmd: "pubrel", messageId });
  await pub.next("pubcomp");
}

/** Waits until the session of `clientId` has ended (its hand-overs are done by then). */
async function sessionEnded(clientId: string): Promise<void> {
  await until(async () => (await sessionStub(env, clientId).describe()) === undefined, `session ${clientId} to end`);
}

async function offline(clientId: string): Promise<void> {
  await until(
    async () => (await sessionStub(env, clientId).describe())?.connected === false,
    `session ${clientId} to be offline`,
  );
}

const payloads = (c: RawClient) => c.all("publish").map((p) => p.payload.toString());

/** A group whose only member `a` holds `m` at QoS 2, unacknowledged; `b` joins afterwards. */
async function qos2HeldByFirstMember(connectA: Record<string, unknown> = {}) {
  const topic = `${uid("share")}/t`;
  const filter = `$share/g/${topic}`;
  const aId = uid("a");
  const a = await member(aId, filter, 2, connectA);
  const pub = await rawClient(5);
  await pub.connect({ clientId: uid("pub") });
  await publish(pub, topic, "m", 2);
  const sent = await a.next("publish");
  expect(sent.qos).toBe(2);
  const b = await member(uid("b"), filter, 2);
  return { topic, filter, aId, a, b, pub, sent };
}

describe("shared subscriptions: a QoS 2 message stays with the member it was sent to [MQTT-4.8.2]", () => {
  it("is not sent to another member when the first member's session ends before PUBREC [MQTT-4.8.2-5]", async () => {
    const { topic, aId, a, b, pub } = await qos2HeldByFirstMember();
    a.send({ cmd: "disconnect", reasonCode: 0 }); // session expiry 0: the session ends
    await sessionEnded(aId);
    await publish(pub, topic, "control", 2); // b is the only member now
    await b.next("publish");
    expect(payloads(b)).toEqual(["control"]);
  });

  it("is not sent to another member when the first member's session ends after PUBREC [MQTT-4.8.2-5]", async () => {
    const { topic, aId, a, b, pub, sent } = await qos2HeldByFirstMember();
    a.send({ cmd: "pubrec", messageId: sent.messageId });
    await a.next("pubrel"); // the member has the message; PUBCOMP never comes
    a.send({ cmd: "disconnect", reasonCode: 0 });
    await sessionEnded(aId);
    await publish(pub, topic, "control", 2);
    await b.next("publish");
    expect(payloads(b)).toEqual(["control"]);
  });

  it("is completed with the same member when its connection breaks, and given to no other [MQTT-4.8.2-4]", async () => {
    const { topic, aId, a, b, pub, sent } = await qos2HeldByFirstMember(persistent);
    a.close(); // no DISCONNECT: the session lives on
    await offline(aId);
    await publish(pub, topic, "control", 2); // goes to the connected member
    await b.next("publish");
    const back = await rawClient(5);
    expect((await back.connect({ clientId: aId, ...persistent })).sessionPresent).toBe(true);
    const again = await back.next("publish");
    expect([again.payload.toString(), again.messageId, again.dup, again.qos]).toEqual(["m", sent.messageId, true, 2]);
    back.send({ cmd: "pubrec", messageId: again.messageId });
    back.send({ cmd: "pubcomp", messageId: (await back.next("pubrel")).messageId });
    expect(payloads(b)).toEqual(["control"]);
    back.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
  });

  it("is completed by a member that unsubscribes while it awaits PUBCOMP, and given to no other [MQTT-3.10.4-3, 4.8.2-5]", async () => {
    const { topic, filter, aId, a, b, pub, sent } = await qos2HeldByFirstMember(persistent);
    a.send({ cmd: "pubrec", messageId: sent.messageId });
    await a.next("pubrel");
    a.send({ cmd: "unsubscribe", messageId: 7, unsubscriptions: [filter] });
    await a.next("unsuback");
    await publish(pub, topic, "control", 2);
    await b.next("publish");
    expect(payloads(b)).toEqual(["control"]);
    // The flow is still this member's to finish: its resumed session sends the PUBREL again.
    a.close();
    await offline(aId);
    const back = await rawClient(5);
    expect((await back.connect({ clientId: aId, ...persistent })).sessionPresent).toBe(true);
    expect((await back.next("pubrel")).messageId).toBe(sent.messageId);
    back.send({ cmd: "pubcomp", messageId: sent.messageId });
    back.send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
  });
});

describe("shared subscriptions: a hand-over to another member loses nothing", () => {
  it("keeps the messages of an ended member whose hand-over failed, and hands them over on retry", async () => {
    const topic = `${uid("share")}/lost`;
    const filter = `$share/g/${topic}`;
    const aId = uid("a");
    // One message in flight, two queued behind Receive Maximum 1; none acknowledged.
    const a = await member(aId, filter, 1, { properties: { receiveMaximum: 1 } });
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("pub") });
    for (const p of ["0", "1", "2"]) await publish(pub, topic, p, 1);
    await a.next("publish");
    const b = await member(uid("b"), filter, 1);
    b.autoAck = true;

    const config = configFor(env);
    const shard = topicShardStub(env, shardForTopic(topic, config.shardCount, config.shardLevels));
    const broken = async () => {
      throw new Error("shard unavailable (test)");
    };
    await runInDurableObject(shard, (instance) => {
      (instance as unknown as { shard: { redistribute: unknown } }).shard.redistribute = broken;
    });
    a.send({ cmd: "disconnect", reasonCode: 0 }); // the session ends; its hand-over fails
    await sessionEnded(aId);
    await publish(pub, topic, "control", 1);
    await b.next("publish");
    expect(payloads(b)).toEqual(["control"]);
    // Retries back off while the shard stays unavailable: 5 s after the first failure, then 10 s, 20 s.
    const session = sessionStub(env, aId);
    const retryIn = () =>
      runInDurableObject(session, async (_i, state) => ((await state.storage.getAlarm()) ?? 0) - Date.now());
    expect(await retryIn()).toBeLessThanOrEqual(5000);
    expect(await runDurableObjectAlarm(session)).toBe(true);
    expect(await runDurableObjectAlarm(session)).toBe(true);
    expect(await retryIn()).toBeGreaterThan(15000);
    expect(b.all("publish")).toHaveLength(1); // the failed retries handed nothing over

    await runInDurableObject(shard, (instance) => {
      delete (instance as unknown as { shard: { redistribute?: unknown } }).shard.redistribute;
    });
    expect(await runDurableObjectAlarm(sessionStub(env, aId))).toBe(true); // the retry
    await b.until(() => b.all("publish").length === 4, 5000, "the handed-over messages");
    expect(payloads(b)).toEqual(["control", "0", "1", "2"]);
  });
});

describe("shared subscriptions: a QoS 1 message is acknowledged or written, as any delivery", () => {
  it("writes no row for messages a connected member acknowledges promptly", async () => {
    const topic = `${uid("share")}/prompt`;
    const filter = `$share/g/${topic}`;
    const a = await member(uid("a"), filter, 1);
    a.autoAck = true;
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("pub") });
    await publish(pub, topic, "first", 1); // tables and packet ids of a first delivery, outside the count
    await a.until(() => a.all("publish").length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100)); // past ACK_WAIT_MS of the first

    const before = { ...counters };
    for (let i = 0; i < 10; i++) await publish(pub, topic, `m${i}`, 1); // each acknowledged once safe
    await a.until(() => a.all("publish").length === 11);
    const late = counters.deliveriesWrittenLate - before.deliveriesWrittenLate;
    const rows = counters.sqlRowsWritten - before.sqlRowsWritten;
    console.log(`10 shared QoS 1 messages acknowledged promptly: ${rows} rows, ${late} written late`);
    // Before: about 2 rows each (written as in flight, then deleted): 19 measured. Every row now belongs to a
    // delivery acknowledged later than ACK_WAIT_MS, which a stalled test machine can cause.
    expect(rows).toBeLessThanOrEqual(2 * late);
    expect(payloads(a).slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    a.close();
    pub.close();
  });

  it("hands unacknowledged, unwritten messages of a member whose session ends to another member", async () => {
    const topic = `${uid("share")}/leaves`;
    const filter = `$share/g/${topic}`;
    const aId = uid("a");
    const bId = uid("b");
    // b is a member, but offline: connected members are offered first, so a gets every message.
    const b0 = await member(bId, filter, 1, persistent);
    b0.send({ cmd: "disconnect" });
    await offline(bId);
    const a = await member(aId, filter, 1); // a clean session: it ends with its connection
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid("pub") });
    const lateBefore = counters.deliveriesWrittenLate;
    const sent = ["0", "1", "2"].map((p) => {
      const messageId = ++packetIds;
      pub.send({ cmd: "publish", topic, payload: Buffer.from(p), qos: 1, messageId });
      return messageId;
    });
    await a.until(() => a.all("publish").length === 3); // none acknowledged
    const unwritten = counters.deliveriesWrittenLate === lateBefore; // still within ACK_WAIT_MS
    a.close(); // the connection, and with it the session, ends
    await sessionEnded(aId);
    // Every publish was acknowledged: each message was safe somewhere (then written, then handed over).
    await pub.until(() => pub.all("puback").length === sent.length);
    const b = await member(bId, filter, 1, { ...persistent, clean: false });
    b.autoAck = true;
    await b.until(() => b.all("publish").length === 3, 5000, "the handed-over messages");
    expect(payloads(b).sort()).toEqual(["0", "1", "2"]);
    console.log(`the member left ${unwritten ? "before" : "after"} its messages were written late`);
    b.close();
    pub.close();
  });
});
