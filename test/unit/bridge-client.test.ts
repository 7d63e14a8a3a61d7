/**
 * The bridge's MQTT client (src/bridge/bridge-client.ts) against a scripted remote: the packets it
 * writes are decoded and checked, the remote's are encoded and fed to it.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { parseBridges, type BridgeConfig } from "../../src/bridge/bridge-config";
import {
  BACKOFF_MAX_MS,
  BridgeClient,
  INBOUND_PENDING_LIMIT,
  readInbound,
  reconnectDelay,
  type BridgeCounts,
  type BridgeStore,
  type InboundMessage,
  type QueuedMessage,
} from "../../src/bridge/bridge-client";
import { encodePacket, parsePacket, type EncodablePacket } from "../../src/protocol/codec";
import type { Packet } from "../../src/protocol/packets";

function bridgeConfig(entry: Record<string, unknown> = {}): BridgeConfig {
  const [bridge] = parseBridges(
    {
      BRIDGES: JSON.stringify([
        {
          name: "m",
          url: "mqtt://h",
          keepalive: 10,
          topics: [
            { direction: "in", filter: "#", qos: 2, remotePrefix: "r/" },
            { direction: "out", filter: "#", qos: 2 },
          ],
          ...entry,
        },
      ]),
    },
    DEFAULT_CONFIG,
  );
  return bridge!;
}

/** A store in memory, as the object's SQLite one behaves. */
class MemoryStore implements BridgeStore {
  rows: QueuedMessage[] = [];
  qos2 = new Set<number>();
  counts: BridgeCounts | undefined;
  countWrites = 0;
  private seq = 0;
  load() {
    return { queue: this.rows.map((r) => ({ ...r })), inboundQos2: [...this.qos2], counts: this.counts };
  }
  saveCounts(counts: BridgeCounts) {
    this.counts = { ...counts };
    this.countWrites++;
  }
  add(m: Omit<QueuedMessage, "seq">) {
    this.rows.push({ ...m, seq: ++this.seq });
    return this.seq;
  }
  update(m: QueuedMessage) {
    const row = this.rows.find((r) => r.seq === m.seq)!;
    row.packetId = m.packetId;
    row.released = m.released;
  }
  remove(seq: number) {
    this.rows = this.rows.filter((r) => r.seq !== seq);
  }
  addInboundQos2(id: number) {
    this.qos2.add(id);
  }
  removeInboundQos2(id: number) {
    this.qos2.delete(id);
  }
}

/** A QoS 1 PUBLISH from the remote. */
const remotePublish = (topic: string, payload: string, messageId: number): EncodablePacket => ({
  cmd: "publish",
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  messageId,
  dup: false,
  retain: false,
});

function harness(entry: Record<string, unknown> = {}, store = new MemoryStore()) {
  const config = bridgeConfig(entry);
  const sent: Packet[] = [];
  const closes: string[] = [];
  const routed: InboundMessage[] = [];
  const drops: [string, string][] = [];
  let clock = 0;
  /** deliverLocal's answers: each call waits until the test settles it. */
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const client = new BridgeClient(
    config,
    {
      send: (bytes) => {
        const parsed = parsePacket(bytes, config.protocol);
        if ("error" in parsed) throw new Error(parsed.error);
        sent.push(parsed.packet);
      },
      close: (reason) => closes.push(reason),
      dropped: (reason, topic) => drops.push([reason, topic]),
      deliverLocal: (message) => {
        routed.push(message);
        return new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
      },
      now: () => clock,
    },
    store,
    { username: "u", password: "p" },
  );
  const feed = (packet: EncodablePacket) => client.received(encodePacket(packet, config.protocol));
  const connect = (sessionPresent = false) => {
    client.opened();
    feed({ cmd: "connack", sessionPresent, reasonCode: 0, returnCode: 0 } as EncodablePacket);
  };
  const settle = () => new Promise((r) => setTimeout(r, 0));
  const of = (cmd: string) => sent.filter((p) => p.cmd === cmd);
  return {
    client,
    store,
    sent,
    closes,
    routed,
    drops,
    pending,
    feed,
    connect,
    settle,
    of,
    advance: (ms: number) => (clock += ms),
  };
}

describe("the bridge's MQTT client", () => {
  it("connects with its client id, keep-alive, persistent session and credentials, then subscribes with No Local", () => {
    const h = harness();
    h.connect();
    const [connect, subscribe] = h.sent;
    expect(connect).toMatchObject({
      cmd: "connect",
      clientId: "bridge-m",
      keepalive: 10,
      clean: false,
      username: "u",
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 86400 },
    });
    expect(Buffer.from((connect as { password: Buffer }).password).toString()).toBe("p");
    expect(subscribe).toMatchObject({
      cmd: "subscribe",
      subscriptions: [{ topic: "r/#", qos: 2, nl: true, rap: true, rh: 1 }],
    });
    expect(h.client.state).toBe("connected");
  });

  it("on MQTT 3.1.1 subscribes without v5 options", () => {
    const h = harness({ protocol: 4 });
    h.connect();
    expect(h.of("subscribe")[0]).toMatchObject({ subscriptions: [{ topic: "r/#", qos: 2 }] });
    expect((h.of("subscribe")[0] as { subscriptions: { nl?: boolean }[] }).subscriptions[0]!.nl).toBeFalsy();
  });

  it("a refused CONNACK closes the connection and says why", () => {
    const h = harness();
    h.client.opened();
    h.feed({ cmd: "connack", sessionPresent: false, reasonCode: 0x87 } as EncodablePacket);
    expect(h.closes).toEqual(["the remote refused the connection (code 135)"]);
    expect(h.client.state).toBe("disconnected");
    expect(h.client.lastError).toMatch(/refused/);
    // A connection that never opened says why too.
    h.client.closed("connect failed: connection refused");
    expect(h.client.lastError).toBe("connect failed: connection refused");
  });

  it("acknowledges an inbound QoS 1 message only once it is routed here, in the order they came [MQTT-4.6.0-2]", async () => {
    const h = harness();
    h.connect();
    h.feed(remotePublish("r/a", "1", 7));
    h.feed(remotePublish("r/b", "2", 8));
    expect(h.routed.map((m) => m.topic)).toEqual(["r/a", "r/b"]);
    expect(h.client.inboundPending).toBe(2); // what the object stops reading at (INBOUND_PENDING_LIMIT)
    let settled = false;
    void h.client.inboundSettled().then(() => (settled = true));
    h.pending[1]!.resolve(); // the second is routed first: its PUBACK still waits for the first's
    await h.settle();
    expect(h.of("puback")).toEqual([]);
    expect(settled).toBe(false);
    h.pending[0]!.resolve();
    await h.settle();
    expect(settled).toBe(true);
    expect(h.of("puback").map((p) => (p as { messageId: number }).messageId)).toEqual([7, 8]);
    expect(h.client.counts.received).toBe(2);
    expect(h.client.inboundPending).toBe(0);
  });

  it("a message that could not be routed is not acknowledged: the connection ends, so the remote sends it again", async () => {
    const h = harness();
    h.connect();
    h.feed(remotePublish("r/a", "1", 7));
    h.pending[0]!.reject(new Error("shard down"));
    await h.settle();
    expect(h.of("puback")).toEqual([]);
    expect(h.closes[0]).toMatch(/routing a message from the remote failed/);
  });

  it("routes an inbound QoS 2 message once, even when the remote resends it before PUBREL", async () => {
    const h = harness();
    h.connect();
    const publish = {
      cmd: "publish",
      topic: "r/x",
      payload: Buffer.from("q2"),
      qos: 2,
      messageId: 9,
      retain: false,
    } as const;
    h.feed({ ...publish, dup: false });
    h.pending[0]!.resolve();
    await h.settle();
    expect(h.store.qos2.has(9)).toBe(true);
    h.feed({ ...publish, dup: true });
    await h.settle();
    expect(h.routed).toHaveLength(1);
    expect(h.of("pubrec").map((p) => (p as { messageId: number }).messageId)).toEqual([9, 9]);
    h.feed({ cmd: "pubrel", messageId: 9 });
    await h.settle();
    expect(h.of("pubcomp")).toHaveLength(1);
    expect(h.store.qos2.size).toBe(0);
  });

  it("queues QoS 1/2 while disconnected, drops QoS 0 then, and sends the queue after CONNACK", () => {
    const h = harness();
    expect(h.client.offer({ topic: "t/0", payload: new Uint8Array([0]), qos: 0, retain: false })).toBe("offline");
    expect(h.client.offer({ topic: "t/1", payload: new Uint8Array([1]), qos: 1, retain: false })).toBe("queued");
    expect(h.client.offer({ topic: "t/2", payload: new Uint8Array([2]), qos: 2, retain: true })).toBe("queued");
    expect(h.store.rows).toHaveLength(2);
    expect(h.client.counts.droppedOffline).toBe(1);
    h.connect();
    const publishes = h.of("publish") as { topic: string; qos: number; messageId: number; retain: boolean }[];
    expect(publishes.map((p) => [p.topic, p.qos, p.retain])).toEqual([
      ["t/1", 1, false],
      ["t/2", 2, true],
    ]);
    h.feed({ cmd: "puback", messageId: publishes[0]!.messageId });
    expect(h.store.rows.map((r) => r.topic)).toEqual(["t/2"]);
    h.feed({ cmd: "pubrec", messageId: publishes[1]!.messageId });
    expect(h.of("pubrel")).toHaveLength(1);
    expect(h.store.rows[0]!.released).toBe(true);
    h.feed({ cmd: "pubcomp", messageId: publishes[1]!.messageId });
    expect(h.store.rows).toEqual([]);
    expect(h.client.counts.sent).toBe(2);
  });

  it("after a reconnect sends unacknowledged messages again with DUP and their packet ids, PUBREL for released ones [MQTT-4.4.0-1]", () => {
    const store = new MemoryStore();
    const first = harness({}, store);
    first.connect();
    first.client.offer({ topic: "t/1", payload: new Uint8Array([1]), qos: 1, retain: false });
    first.client.offer({ topic: "t/2", payload: new Uint8Array([2]), qos: 2, retain: false });
    const [p1, p2] = first.of("publish") as { messageId: number }[];
    first.feed({ cmd: "pubrec", messageId: p2!.messageId });
    // The object is evicted and wakes with the same storage.
    const second = harness({}, store);
    second.connect(true);
    const resent = second.sent.filter((p) => p.cmd === "publish" || p.cmd === "pubrel");
    expect(resent).toEqual([
      expect.objectContaining({ cmd: "publish", topic: "t/1", dup: true, messageId: p1!.messageId }),
      expect.objectContaining({ cmd: "pubrel", messageId: p2!.messageId }),
    ]);
    // A new message does not take a packet id still held by the queue.
    second.client.offer({ topic: "t/3", payload: new Uint8Array([3]), qos: 1, retain: false });
    const id3 = (second.of("publish").at(-1) as { messageId: number }).messageId;
    expect([p1!.messageId, p2!.messageId]).not.toContain(id3);
  });

  it("keeps at most maxInflight messages in flight", () => {
    const h = harness({ maxInflight: 2 });
    h.connect();
    for (let i = 0; i < 5; i++) h.client.offer({ topic: `t/${i}`, payload: new Uint8Array(1), qos: 1, retain: false });
    expect(h.of("publish")).toHaveLength(2);
    h.feed({ cmd: "puback", messageId: (h.of("publish")[0] as { messageId: number }).messageId });
    expect(h.of("publish")).toHaveLength(3);
  });

  it("drops and counts a QoS 1/2 message beyond maxQueuedMessages or maxQueuedBytes", () => {
    const h = harness({ maxQueuedMessages: 2, maxQueuedBytes: 1024 });
    const m = (topic: string, size: number) => ({
      topic,
      payload: new Uint8Array(size),
      qos: 1 as const,
      retain: false,
    });
    expect(h.client.offer(m("a", 10))).toBe("queued");
    expect(h.client.offer(m("b", 2000))).toBe("full"); // bytes
    expect(h.client.offer(m("c", 10))).toBe("queued");
    expect(h.client.offer(m("d", 10))).toBe("full"); // count
    expect(h.store.rows.map((r) => r.topic)).toEqual(["a", "c"]);
    expect(h.client.counts.droppedFull).toBe(2);
  });

  it("sends PINGREQ after a keep-alive without sending, and closes when no PINGRESP follows [MQTT-3.1.2-20]", () => {
    const h = harness();
    h.connect();
    h.advance(9999);
    h.client.tick();
    expect(h.of("pingreq")).toHaveLength(0);
    h.advance(1);
    h.client.tick();
    expect(h.of("pingreq")).toHaveLength(1);
    h.feed({ cmd: "pingresp" });
    h.advance(10000);
    h.client.tick();
    expect(h.of("pingreq")).toHaveLength(2);
    h.advance(10000);
    h.client.tick();
    expect(h.closes).toEqual(["no PINGRESP from the remote"]);
  });

  it("forwards a v5 message's expiry less the time it waited here; one that expired unsent is dropped and counted [MQTT-3.3.2-5, 3.3.2-6]", () => {
    const h = harness();
    const m = (topic: string, qos: 0 | 1 | 2, expiry?: number) => ({
      topic,
      payload: new Uint8Array([1]),
      qos,
      retain: false,
      receivedAt: 0,
      ...(expiry === undefined ? {} : { properties: { messageExpiryInterval: expiry } }),
    });
    expect(h.client.offer(m("t/ten", 1, 10))).toBe("queued");
    expect(h.client.offer(m("t/three", 1, 3))).toBe("queued");
    expect(h.client.offer(m("t/none", 2))).toBe("queued");
    h.advance(4500); // 4 whole seconds waited
    h.connect();
    expect(h.client.offer(m("t/q0-late", 0, 2))).toBe("expired");
    expect(h.client.offer(m("t/q0", 0, 60))).toBe("sent");
    const publishes = h.of("publish") as { topic: string; properties?: { messageExpiryInterval?: number } }[];
    expect(publishes.map((p) => [p.topic, p.properties?.messageExpiryInterval])).toEqual([
      ["t/ten", 6],
      ["t/none", undefined],
      ["t/q0", 56],
    ]);
    expect(h.store.rows.map((r) => r.topic)).toEqual(["t/ten", "t/none"]);
    expect(h.client.counts.droppedExpired).toBe(2);
    expect(h.drops).toEqual([
      ["expired", "t/three"],
      ["expired", "t/q0-late"],
    ]);
    // Sent before it expired: resent after a reconnect all the same, as live [MQTT-4.3.3-7].
    h.advance(60000);
    h.client.closed("cut");
    h.connect();
    const resent = h.of("publish").slice(3) as { topic: string; dup: boolean; properties?: Record<string, number> }[];
    expect(resent.map((p) => [p.topic, p.dup, p.properties?.messageExpiryInterval])).toEqual([
      ["t/ten", true, 1],
      ["t/none", true, undefined],
    ]);
  });

  it("a PUBREC or PUBACK with a reason code of 0x80 or more ends the flow: no PUBREL, the message leaves the queue, counted as refused [MQTT-4.3.3-4]", () => {
    const h = harness();
    h.connect();
    h.client.offer({ topic: "t/q2", payload: new Uint8Array([2]), qos: 2, retain: false });
    h.client.offer({ topic: "t/q1", payload: new Uint8Array([1]), qos: 1, retain: false });
    h.client.offer({ topic: "t/ok", payload: new Uint8Array([3]), qos: 2, retain: false });
    const [q2, q1, ok] = h.of("publish") as { messageId: number }[];
    h.feed({ cmd: "pubrec", messageId: q2!.messageId, reasonCode: 0x87 } as EncodablePacket);
    h.feed({ cmd: "puback", messageId: q1!.messageId, reasonCode: 0x80 } as EncodablePacket);
    expect(h.of("pubrel")).toEqual([]);
    expect(h.store.rows.map((r) => r.topic)).toEqual(["t/ok"]);
    expect(h.client.counts).toMatchObject({ droppedRefused: 2, sent: 0 });
    expect(h.drops).toEqual([
      ["refused", "t/q2"],
      ["refused", "t/q1"],
    ]);
    // Below 0x80 (0x10: no matching subscribers) is a success: PUBREL, then PUBCOMP ends it as sent.
    h.feed({ cmd: "pubrec", messageId: ok!.messageId, reasonCode: 0x10 } as EncodablePacket);
    expect(h.of("pubrel").map((p) => (p as { messageId: number }).messageId)).toEqual([ok!.messageId]);
    h.feed({ cmd: "pubcomp", messageId: ok!.messageId });
    expect(h.client.counts).toMatchObject({ droppedRefused: 2, sent: 1 });
    expect(h.store.rows).toEqual([]);
  });

  it("a refused CONNACK's or a DISCONNECT's Reason String goes into lastError, control characters removed and cut", () => {
    const h = harness();
    h.client.opened();
    const reasonString = `<script>alert(1)</script>\nbad\u0000${"x".repeat(500)}`;
    h.feed({
      cmd: "connack",
      sessionPresent: false,
      reasonCode: 0x87,
      properties: { reasonString },
    } as EncodablePacket);
    expect(h.client.lastError).toBe(
      `the remote refused the connection (code 135): "${`<script>alert(1)</script> bad ${"x".repeat(500)}`.slice(0, 200)}"`,
    );
    h.connect();
    h.feed({ cmd: "disconnect", reasonCode: 0x8b, properties: { reasonString: "shutting down" } } as EncodablePacket);
    expect(h.client.lastError).toBe('the remote disconnected (reason 139): "shutting down"');
  });

  it("saves its counts only when they changed (one row, not one per message) and starts from them after a wake", () => {
    const store = new MemoryStore();
    const first = harness({}, store);
    first.connect();
    for (let i = 0; i < 3; i++) first.client.offer({ topic: "t", payload: new Uint8Array(1), qos: 0, retain: false });
    expect(first.client.saveCounts()).toBe(true);
    expect(first.client.saveCounts()).toBe(false);
    expect(store.countWrites).toBe(1);
    first.client.offer({ topic: "t", payload: new Uint8Array(1), qos: 0, retain: false }); // not saved: lost below
    first.client.counts.unmapped++;
    const second = harness({}, store);
    expect(second.client.counts).toMatchObject({ sent: 3, unmapped: 0, droppedOffline: 0 });
    second.client.offer({ topic: "t", payload: new Uint8Array(1), qos: 0, retain: false }); // offline
    expect(second.client.saveCounts()).toBe(true);
    expect(store.counts).toMatchObject({ sent: 3, droppedOffline: 1 });
  });

  it(`stops reading the remote at ${INBOUND_PENDING_LIMIT} messages waiting for their shard, and reads on once they are routed`, async () => {
    const h = harness();
    h.connect();
    const chunks = Array.from({ length: INBOUND_PENDING_LIMIT + 44 }, (_, i) =>
      encodePacket(
        { cmd: "publish", topic: `r/${i}`, payload: Buffer.from("x"), qos: 0, dup: false, retain: false },
        5,
      ),
    );
    let reads = 0;
    let ended = false;
    void readInbound(
      async () => (reads < chunks.length ? { value: chunks[reads++], done: false } : { done: true }),
      h.client,
      () => true,
      (bytes) => h.client.received(bytes),
    ).then(() => (ended = true));
    for (let i = 0; i < 5; i++) await h.settle();
    expect(reads).toBe(INBOUND_PENDING_LIMIT);
    expect(h.routed).toHaveLength(INBOUND_PENDING_LIMIT);
    expect(ended).toBe(false);
    // Routed as they come: the rest are read once the first ones settled.
    while (!ended) {
      for (const p of h.pending.splice(0)) p.resolve();
      await h.settle();
    }
    for (const p of h.pending.splice(0)) p.resolve();
    await h.client.inboundSettled();
    expect(reads).toBe(chunks.length);
    expect(h.routed).toHaveLength(chunks.length);
    expect(h.client.counts.received).toBe(chunks.length);
  });

  it("waits before reconnecting: doubling from 1 s to at most 60 s, with jitter in the upper half", () => {
    expect(reconnectDelay(0, () => 0)).toBe(500);
    expect(reconnectDelay(0, () => 1)).toBe(1000);
    expect(reconnectDelay(3, () => 0.5)).toBe(6000);
    expect(reconnectDelay(40, () => 1)).toBe(BACKOFF_MAX_MS);
    expect(reconnectDelay(40, () => 0)).toBe(BACKOFF_MAX_MS / 2);
  });
});
