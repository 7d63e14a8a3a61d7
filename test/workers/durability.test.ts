/**
 * Nothing acknowledged is lost when any object restarts: abortAllDurableObjects() in the middle of
 * QoS 1 and QoS 2 flows, then reconnect and check what arrives.
 */
import { abortAllDurableObjects, env, runInDurableObject } from "cloudflare:test";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { until } from "../support/until";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";
import type { OutgoingPublish } from "../support/raw-client";

const generate = (packet: Record<string, unknown>, version: 4 | 5) =>
  mqtt.generate(packet as unknown as mqtt.Packet, { protocolVersion: version });

const persistent = (version: 4 | 5) =>
  version === 5 ? { clean: false, properties: { sessionExpiryInterval: 600 } } : { clean: false };

/** Which of vitest.config.ts's projects runs the file: who calls the shard for a client's QoS 0/1 PUBLISH. */
const routing = (env as { ROUTE_AT_EDGE?: string }).ROUTE_AT_EDGE === "1" ? "gateway" : "session";

describe.each([4, 5] as const)(`restarts of every object, MQTT v%i, routed by the ${routing}`, (version) => {
  it("keeps acknowledged QoS 1 and QoS 2 messages queued for an offline session [MQTT-3.1.2-23, 4.1.0-1]", async () => {
    const subId = uid("sub");
    const topic = `${uid("dur")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 2);
    sub.send({ cmd: "disconnect" });
    await sub.waitClosed();

    const pub = await rawClient(version);
    await pub.connect({ clientId: uid("pub") });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("one"), qos: 1, messageId: 1 });
    await pub.next("puback");
    pub.send({ cmd: "publish", topic, payload: Buffer.from("two"), qos: 2, messageId: 2 });
    await pub.next("pubrec");
    pub.send({ cmd: "pubrel", messageId: 2 });
    await pub.next("pubcomp");

    await abortAllDurableObjects();

    const back = await rawClient(version);
    const connack = await back.connect({ clientId: subId, ...persistent(version) });
    expect(connack.sessionPresent).toBe(true);
    await back.until(() => back.all("publish").length === 2);
    expect(back.all("publish").map((p) => p.payload.toString())).toEqual(["one", "two"]);
    back.close();
  });

  it("completes an outbound QoS 2 flow exactly once across a restart after PUBREC", async () => {
    const subId = uid("sub2");
    const topic = `${uid("dur2")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 2);
    const pub = await rawClient(version);
    await pub.connect({ clientId: uid("pub") });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("x"), qos: 2, messageId: 9 });
    const publish = await sub.next("publish");
    sub.send({ cmd: "pubrec", messageId: publish.messageId });
    await sub.next("pubrel");

    await abortAllDurableObjects();
    await sub.waitClosed();

    const back = await rawClient(version);
    await back.connect({ clientId: subId, ...persistent(version) });
    const rel = await back.next("pubrel");
    expect(rel.messageId).toBe(publish.messageId);
    back.send({ cmd: "pubcomp", messageId: rel.messageId });
    await back.roundTrip(); // whatever the session resent on reconnecting has arrived by now
    expect(back.all("publish")).toHaveLength(0);
    back.close();
  });

  it("routes an inbound QoS 2 message once when the publisher resumes after a restart", async () => {
    const pubId = uid("pub3");
    const subId = uid("sub3");
    const topic = `${uid("dur3")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 2);

    const pub = await rawClient(version);
    await pub.connect({ clientId: pubId, ...persistent(version) });
    const publish: OutgoingPublish = { cmd: "publish", topic, payload: Buffer.from("once"), qos: 2, messageId: 11 };
    pub.send(publish);
    await pub.next("pubrec");
    const first = await sub.next("publish"); // delivered, not yet acknowledged

    await abortAllDurableObjects();
    await pub.waitClosed();
    await sub.waitClosed();

    // The publisher resumes and resends the PUBLISH (DUP) before PUBREL: it is not routed again.
    const pub2 = await rawClient(version);
    expect((await pub2.connect({ clientId: pubId, ...persistent(version) })).sessionPresent).toBe(true);
    pub2.send({ ...publish, dup: true });
    await pub2.next("pubrec");
    pub2.send({ cmd: "pubrel", messageId: 11 });
    await pub2.next("pubcomp");

    // The subscriber gets the same message once more as a DUP of the unacknowledged one, and no other copy.
    const sub2 = await rawClient(version);
    await sub2.connect({ clientId: subId, ...persistent(version) });
    const again = await sub2.next("publish");
    expect(again.dup).toBe(true);
    expect(again.messageId).toBe(first.messageId);
    sub2.send({ cmd: "pubrec", messageId: again.messageId });
    await sub2.next("pubrel");
    sub2.send({ cmd: "pubcomp", messageId: again.messageId });
    // A marker from the same publisher on the same topic, sent after the resend was acknowledged:
    // a second routing of "once" would have reached the subscriber before it.
    pub2.send({ cmd: "publish", topic, payload: Buffer.from("marker"), qos: 1, messageId: 12 });
    await pub2.next("puback");
    await sub2.until(() => sub2.all("publish").some((p) => p.payload.toString() === "marker"), 5000, "the marker");
    expect(sub2.all("publish").map((p) => p.payload.toString())).toEqual(["once", "marker"]);
    sub2.close();
  });

  it("routes an inbound QoS 2 message once when its connection ended before PUBREC and every object restarts before the resend [MQTT-4.3.3-10] [MQTT311-4.3.3-2]", async () => {
    const pubId = uid("pub5");
    const subId = uid("sub5");
    const topic = `${uid("dur5")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 0); // QoS 0: nothing on the subscriber's side could spot a copy

    const pub = await rawClient(version);
    await pub.connect({ clientId: pubId, ...persistent(version) });
    const publish: OutgoingPublish = { cmd: "publish", topic, payload: Buffer.from("once"), qos: 2, messageId: 21 };
    // The connection ends right behind the PUBLISH (one frame), before its routing can complete.
    pub.sendBytes(Buffer.concat([generate(publish, version), generate({ cmd: "disconnect" }, version)]));
    await pub.waitClosed();
    await sub.until(() => sub.all("publish").length === 1, 5000, "the first copy");
    expect(pub.all("pubrec")).toHaveLength(0);
    // Routed: the publisher's session records it although the connection that sent it is gone.
    const session = env.SESSION.get(env.SESSION.idFromName(pubId));
    const routed = () =>
      runInDurableObject(
        session,
        (_o, state) =>
          state.storage.sql.exec(`SELECT routed FROM inq2 WHERE packet_id = 21`).toArray()[0]?.routed === 1,
      );
    await until(routed, "the inbound QoS 2 row marked routed");

    await abortAllDurableObjects();
    await sub.waitClosed();

    const sub2 = await rawClient(version);
    await sub2.connect({ clientId: subId, ...persistent(version) });
    const pub2 = await rawClient(version);
    expect((await pub2.connect({ clientId: pubId, ...persistent(version) })).sessionPresent).toBe(true);
    pub2.send({ ...publish, dup: true });
    expect((await pub2.next("pubrec")).messageId).toBe(21);
    pub2.send({ cmd: "pubrel", messageId: 21 });
    expect((await pub2.next("pubcomp")).messageId).toBe(21);
    pub2.send({ cmd: "publish", topic, payload: Buffer.from("control"), qos: 1, messageId: 22 });
    await pub2.next("puback");
    await sub2.until(() => sub2.all("publish").length > 0, 5000, "the control message");
    expect(sub2.all("publish").map((p) => p.payload.toString())).toEqual(["control"]);
    pub2.close();
    sub2.close();
  });

  it("keeps a QoS 1 message the subscriber had not acknowledged when objects restart [MQTT-4.3.2-3, 4.4.0-1]", async () => {
    const subId = uid("sub4");
    const topic = `${uid("dur4")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 1);
    const pub = await rawClient(version);
    await pub.connect({ clientId: uid("pub") });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("unacked"), qos: 1, messageId: 3 });
    await pub.next("puback");
    await sub.next("publish"); // received, never acknowledged

    await abortAllDurableObjects();
    await sub.waitClosed();

    const back = await rawClient(version);
    await back.connect({ clientId: subId, ...persistent(version) });
    const again = await back.next("publish");
    expect(again.payload.toString()).toBe("unacked");
    expect(again.dup).toBe(true);
    back.send({ cmd: "puback", messageId: again.messageId });
    back.close();
  });

  it("never acknowledges a QoS 1 message that only the subscriber's memory held: lost in a restart, it comes again from the publisher [MQTT-4.3.2-3]", async () => {
    // The subscriber is online and has not acknowledged yet; within ACK_WAIT_MS the message is in its
    // session's memory only, so the publisher must not have its PUBACK when every object restarts.
    const subId = uid("sub5");
    const pubId = uid("pub5");
    const topic = `${uid("dur5")}/x`;
    const sub = await rawClient(version);
    await sub.connect({ clientId: subId, ...persistent(version) });
    await sub.subscribe(topic, 1);
    const pub = await rawClient(version);
    await pub.connect({ clientId: pubId, ...persistent(version) });
    pub.send({ cmd: "publish", topic, payload: Buffer.from("in memory"), qos: 1, messageId: 5 });
    await sub.next("publish");
    const ackedBeforeRestart = pub.all("puback").length > 0;
    await abortAllDurableObjects();
    await pub.waitClosed();
    // Routed by the gateway, the chain gateway -> shard -> this session is cancelled only at the
    // gateway's deadline (EDGE_ROUTE_TIMEOUT_MS, 5 s in this tier): the reset session closes then.
    await sub.waitClosed(10_000);
    expect(ackedBeforeRestart).toBe(false);
    expect(pub.all("puback")).toHaveLength(0);

    // The publisher resends it on its next connection (as any MQTT client does), and it arrives.
    const sub2 = await rawClient(version);
    await sub2.connect({ clientId: subId, ...persistent(version) });
    const pub2 = await rawClient(version);
    await pub2.connect({ clientId: pubId, ...persistent(version) });
    pub2.send({ cmd: "publish", topic, payload: Buffer.from("in memory"), qos: 1, messageId: 5, dup: true });
    await pub2.next("puback");
    const again = await sub2.next("publish");
    expect(again.payload.toString()).toBe("in memory");
    sub2.send({ cmd: "puback", messageId: again.messageId });
    sub2.close();
    pub2.close();
  });

  it("sends the will of a connection lost in a restart once, when its session next wakes", async () => {
    const clientId = uid("will");
    const topic = `${uid("lost")}/status`;
    const a = await rawClient(version);
    await a.connect({ clientId, will: { topic, payload: Buffer.from("lost"), qos: 1 } });
    await abortAllDurableObjects();
    await a.waitClosed();

    const watcher = await rawClient(version);
    await watcher.connect({ clientId: uid("watch") });
    await watcher.subscribe(topic, 1);
    const back = await rawClient(version);
    await back.connect({ clientId });
    const will = await watcher.next("publish");
    expect(will.payload.toString()).toBe("lost");
    // A marker published by the same session on the same topic after it woke: a second will would be before it.
    back.send({ cmd: "publish", topic, payload: Buffer.from("marker"), qos: 1, messageId: 1 });
    await back.next("puback");
    await watcher.until(() => watcher.all("publish").length >= 2, 5000, "the marker");
    expect(watcher.all("publish").map((p) => p.payload.toString())).toEqual(["lost", "marker"]);
    back.close();
    watcher.close();
  });
});
