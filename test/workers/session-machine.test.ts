/**
 * The session state machine (src/session/session.ts) on real SQLite inside workerd, with its I/O
 * recorded: packets in as bytes, packets out decoded from the frames it sends.
 */
import { env, runInDurableObject } from "cloudflare:test";
import mqtt, { type IConnectPacket, type Packet, type PacketCmd } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type BrokerConfig } from "../../src/config";
import type { Delivery, RoutedMessage, Subscription } from "../../src/protocol/message";
import { Session, type SessionEvent, type SessionIO } from "../../src/session/session";
import { decodeEdgeOrder, encodeEdgeAcked, isEdgeOrder, type EdgeOrder } from "../../src/protocol/internal-frame";
import { SqliteSessionStore, type SessionMeta } from "../../src/session/store";
import { hookMessage, type BrokerHooks, type HookContext } from "../../src/hooks";
import type { Identity } from "../../src/auth/acl";
import { at, atLeast } from "../support/elements";
import { uid } from "../support/ids";
import type { OutgoingPacket, OutgoingPublish, PacketOf } from "../support/raw-client";
import { until } from "../support/until";

class RecordingIO implements SessionIO {
  out: Packet[] = [];
  closed: string[] = [];
  routed: RoutedMessage[] = [];
  subscribed: Subscription[] = [];
  alarm: number | undefined;
  time = 1_000_000;
  redistributed: RoutedMessage[] = [];
  events: SessionEvent[] = [];
  /** Set to control when (and whether) each route() settles, and how many subscribers it reports. */
  routeResult: () => Promise<number> = async () => 1;
  private ids = 0;

  constructor(private readonly version: 4 | 5) {}

  /** Each packet sent with the connection it went to. */
  outTo: { connId: string; packet: Packet }[] = [];

  /** Edge orders the session handed to the gateway (a connection that routes at the edge). */
  edgeOrders: EdgeOrder[] = [];

  send(connId: string, frame: Uint8Array): void {
    if (isEdgeOrder(frame)) {
      const order = decodeEdgeOrder(frame);
      if ("error" in order) throw new Error(order.error);
      this.edgeOrders.push(order);
      return;
    }
    const parser = mqtt.parser({ protocolVersion: this.version });
    parser.on("packet", (p) => {
      this.out.push(p);
      this.outTo.push({ connId, packet: p });
    });
    parser.parse(Buffer.from(frame));
  }
  close(connId: string): void {
    this.closed.push(connId);
  }
  report(event: SessionEvent): void {
    this.events.push(event);
  }
  hooks: BrokerHooks = {};
  hookContext(clientId: string, identity: Identity): HookContext {
    return {
      env: {},
      clientId,
      identity,
      publish: async (p) =>
        this.route({ ...hookMessage(p), id: `hook-${++this.ids}`, origin: "", receivedAt: this.time }),
    };
  }
  route(message: RoutedMessage): Promise<number> {
    this.routed.push(message);
    return this.routeResult();
  }
  async redistribute(_shareFilter: string, _leaving: string, message: RoutedMessage): Promise<void> {
    this.redistributed.push(message);
  }
  async subscribe(_clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]> {
    this.subscribed.push(...subs);
    return retainedFor.map(() => []);
  }
  async unsubscribe(): Promise<void> {}
  /** Values of a session that writes no row, kept with its connection. */
  kept: SessionMeta[] = [];
  keepWithConnection(_connId: string, meta: SessionMeta): void {
    this.kept.push(structuredClone(meta));
  }
  setAlarm(at: number | undefined): void {
    this.alarm = at;
  }
  /** Callbacks scheduled with later(), run by the test when it chooses (runTimers). */
  timers: (() => void)[] = [];
  later(_ms: number, fn: () => void): void {
    this.timers.push(fn);
  }
  runTimers(): void {
    const due = this.timers;
    this.timers = [];
    due.forEach((fn) => fn());
  }
  now(): number {
    return this.time;
  }
  newId(): string {
    return `id${++this.ids}`;
  }
  take<C extends PacketCmd>(cmd: C): PacketOf<C>[] {
    return this.out.filter((p): p is PacketOf<C> => p.cmd === cmd);
  }
}

const bytes = (packet: OutgoingPacket, version: 4 | 5) =>
  new Uint8Array(mqtt.generate(packet as mqtt.Packet, { protocolVersion: version }));

/** Runs `body` with a fresh Session over a fresh Durable Object's SQLite. */
async function withSession(
  version: 4 | 5,
  body: (s: {
    session: Session;
    io: RecordingIO;
    send: (p: OutgoingPacket) => Promise<void>;
    sql: SqlStorage;
    /** Bytes as the gateway sends them (its type-0 packets, say), after CONNECT. */
    sendRaw: (b: Uint8Array) => Promise<void>;
  }) => Promise<void>,
  config: BrokerConfig = DEFAULT_CONFIG,
  routeAtEdge = false,
) {
  const stub = env.SESSION.get(env.SESSION.idFromName(uid("machine")));
  await runInDurableObject(stub, async (_instance, state) => {
    const io = new RecordingIO(version);
    const session = new Session(new SqliteSessionStore(state.storage.sql), io, config);
    const info = { connId: "conn-1", clientId: "machine-client", assignedClientId: false, routeAtEdge };
    let connected = false;
    const send = async (p: OutgoingPacket) => {
      await session.receive(info, bytes(p, version), connected ? version : undefined);
      connected = true;
    };
    const sendRaw = (b: Uint8Array) => session.receive(info, b, version);
    await body({ session, io, send, sql: state.storage.sql, sendRaw });
  });
}

const connect = (version: 4 | 5, extra: Partial<IConnectPacket> = {}): IConnectPacket => ({
  cmd: "connect",
  protocolVersion: version,
  clientId: "machine-client",
  clean: true,
  keepalive: 60,
  ...extra,
});

const delivery = (id: string, qos: 0 | 1 | 2): Delivery => ({
  message: {
    id,
    origin: "other",
    topic: "t/x",
    payload: new TextEncoder().encode(id),
    qos,
    retain: false,
    receivedAt: 1,
  },
  qos,
  retain: false,
});

describe("Session state machine", () => {
  it("answers CONNECT with CONNACK and truthful v5 capability properties [MQTT-3.2.2-9, 3.2.2-1]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      const [connack] = atLeast(io.take("connack"), 1);
      expect(connack.sessionPresent).toBe(false);
      expect(connack.reasonCode).toBe(0);
      expect(connack.properties).toMatchObject({
        receiveMaximum: DEFAULT_CONFIG.receiveMaximum,
        maximumPacketSize: DEFAULT_CONFIG.maxPacketSize,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        sharedSubscriptionAvailable: true,
        subscriptionIdentifiersAvailable: true,
        topicAliasMaximum: DEFAULT_CONFIG.topicAliasMaximum,
      });
      expect(connack.properties!.maximumQoS).toBeUndefined(); // QoS 2 is supported [MQTT-3.2.2-9]
    });
  });

  it("sends PUBACKs in PUBLISH order even when routing finishes out of order [MQTT-4.6.0-2] [MQTT311-4.6.0-2]", async () => {
    await withSession(4, async ({ io, send }) => {
      await send(connect(4));
      const releases: (() => void)[] = [];
      io.routeResult = () => new Promise<number>((resolve) => releases.push(() => resolve(1)));
      await send({ cmd: "publish", topic: "a", payload: Buffer.from("1"), qos: 1, messageId: 1 });
      await send({ cmd: "publish", topic: "a", payload: Buffer.from("2"), qos: 1, messageId: 2 });
      expect(io.take("puback")).toHaveLength(0); // not durable yet: no acknowledgement
      at(releases, 1)();
      await quiet();
      expect(io.take("puback")).toHaveLength(0); // the second waits for the first
      at(releases, 0)();
      await until(() => io.take("puback").length === 2, "both PUBACKs");
      expect(io.take("puback").map((p) => p.messageId)).toEqual([1, 2]);
    });
  });

  it("does not acknowledge a message whose routing failed, and closes the connection [MQTT-4.5.0-1] [MQTT311-4.8.0-2]", async () => {
    for (const version of [4, 5] as const) {
      await withSession(version, async ({ io, send }) => {
        await send(connect(version));
        io.routeResult = async () => {
          throw new Error("shard unavailable");
        };
        await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 1 });
        await until(() => io.closed.includes("conn-1"), "the connection closed");
        expect(io.take("puback")).toHaveLength(0);
        if (version === 5) expect(io.take("disconnect")[0]?.reasonCode).toBe(0x80);
        expect(io.closed).toContain("conn-1");
      });
    }
  });

  it("sends the next window in one frame when one frame acknowledges several [MQTT-4.9.0-2]", async () => {
    await withSession(5, async ({ session, io, send, sendRaw }) => {
      await send(connect(5, { properties: { receiveMaximum: 3 } }));
      session.deliver(["m1", "m2", "m3", "m4", "m5", "m6"].map((id) => delivery(id, 1)));
      const first = io.take("publish");
      expect(first.map((p) => p.payload.toString())).toEqual(["m1", "m2", "m3"]); // m4-m6 queued
      const frames: Uint8Array[] = [];
      const record = io.send.bind(io);
      io.send = (connId, frame) => {
        frames.push(frame);
        record(connId, frame);
      };
      // One frame of three PUBACKs, handed to the session as its object does: each received before any is handled.
      await Promise.all(first.map((p) => sendRaw(bytes({ cmd: "puback", messageId: p.messageId }, 5))));
      expect(io.take("publish").map((p) => p.payload.toString())).toEqual(["m1", "m2", "m3", "m4", "m5", "m6"]);
      expect(frames).toHaveLength(1); // one frame for the three, not one per PUBACK
    });
  });

  it("refills the window at once when other packets follow the acknowledgement [MQTT-4.9.0-2]", async () => {
    await withSession(5, async ({ session, io, send, sendRaw }) => {
      await send(connect(5, { properties: { receiveMaximum: 1 } }));
      session.deliver([delivery("n1", 1), delivery("n2", 1)]);
      const [n1] = atLeast(io.take("publish"), 1);
      // The SUBSCRIBE behind the PUBACK waits on its shard: n2 must not wait for it.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const subscribe = io.subscribe.bind(io);
      io.subscribe = async (...args) => {
        await held;
        return subscribe(...args);
      };
      const acked = sendRaw(bytes({ cmd: "puback", messageId: n1.messageId }, 5));
      const subscribed = sendRaw(
        bytes({ cmd: "subscribe", messageId: 7, subscriptions: [{ topic: "s/#", qos: 1 }] }, 5),
      );
      await acked;
      await until(() => io.take("publish").length === 2, "n2 sent while the SUBSCRIBE waits");
      expect(io.take("suback")).toHaveLength(0); // the SUBSCRIBE was still waiting
      release();
      await subscribed;
      expect(io.take("suback")).toHaveLength(1);
    });
  });

  it("keeps the in-flight window at the client's Receive Maximum [MQTT-3.3.4-9, 4.9.0-1, 4.9.0-2, 2.2.1-4]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(connect(5, { properties: { receiveMaximum: 2 } }));
      session.deliver([delivery("m1", 1), delivery("m2", 1), delivery("m3", 1)]);
      const first = io.take("publish");
      expect(first.map((p) => p.payload.toString())).toEqual(["m1", "m2"]);
      // [MQTT-2.2.1-4] each new QoS>0 PUBLISH has a non-zero identifier no in-flight message holds
      const [id1 = 0, id2 = 0] = first.map((p) => p.messageId); // 0: none, which the next line refuses
      expect(id1 > 0 && id2 > 0 && id1 !== id2).toBe(true);
      await send({ cmd: "puback", messageId: id1 });
      const all = io.take("publish");
      expect(all.map((p) => p.payload.toString())).toEqual(["m1", "m2", "m3"]);
      expect((at(all, 2).messageId ?? 0) > 0 && at(all, 2).messageId !== id2).toBe(true);
    });
  });

  it("counts a QoS 2 message to the Receive Maximum until its PUBCOMP, not only until PUBREC [MQTT-3.3.4-9]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(connect(5, { properties: { receiveMaximum: 1 } }));
      session.deliver([delivery("q2-a", 2)]);
      const [first] = atLeast(io.take("publish"), 1);
      expect(first.payload.toString()).toBe("q2-a");
      await send({ cmd: "pubrec", messageId: first.messageId });
      expect(io.take("pubrel").map((p) => p.messageId)).toEqual([first.messageId]);
      session.deliver([delivery("q2-b", 2)]); // arrives while the PUBREL awaits its PUBCOMP
      expect(io.take("publish").map((p) => p.payload.toString())).toEqual(["q2-a"]); // the flow still holds the window
      await send({ cmd: "pubcomp", messageId: first.messageId });
      expect(io.take("publish").map((p) => p.payload.toString())).toEqual(["q2-a", "q2-b"]);
    });
  });

  it("ignores a second delivery of the same message id (exactly once) [MQTT-4.3.3-10]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(connect(5));
      session.deliver([delivery("same", 2)]);
      session.deliver([delivery("same", 2)]);
      expect(io.take("publish")).toHaveLength(1);
    });
  });

  it("leaves out a Reason String that would exceed the client's Maximum Packet Size [MQTT-3.14.2-3, 3.4.2-2, 3.5.2-2, 3.9.2-1]", async () => {
    for (const [max, expectString] of [
      [16, false],
      [1000, true],
    ] as const) {
      await withSession(5, async ({ io, send }) => {
        await send(connect(5, { properties: { maximumPacketSize: max } }));
        // a PUBACK 0x99 (payload not UTF-8) with its reason string, then a DISCONNECT 0x94 with one
        await send({
          cmd: "publish",
          topic: "b",
          payload: Buffer.from([0xff]),
          qos: 1,
          messageId: 6,
          properties: { payloadFormatIndicator: true },
        });
        const [puback] = atLeast(io.take("puback"), 1);
        expect(puback.reasonCode).toBe(0x99);
        expect(puback.properties?.reasonString !== undefined).toBe(expectString);
        await send({
          cmd: "publish",
          topic: "b",
          payload: Buffer.from([0xff]),
          qos: 2,
          messageId: 8,
          properties: { payloadFormatIndicator: true },
        });
        const [pubrec] = atLeast(io.take("pubrec"), 1);
        expect(pubrec.reasonCode).toBe(0x99);
        expect(pubrec.properties?.reasonString !== undefined).toBe(expectString);
        await send({ cmd: "subscribe", messageId: 7, subscriptions: [{ topic: "bad/#/x", qos: 0 }] });
        const [suback] = atLeast(io.take("suback"), 1);
        expect(suback.granted).toEqual([0x8f]);
        expect(suback.properties?.reasonString !== undefined).toBe(expectString);
        await send({
          cmd: "publish",
          topic: "a",
          payload: Buffer.from("x"),
          qos: 0,
          properties: { topicAlias: DEFAULT_CONFIG.topicAliasMaximum + 1 },
        });
        const [disconnect] = atLeast(io.take("disconnect"), 1);
        expect(disconnect.reasonCode).toBe(0x94);
        expect(disconnect.properties?.reasonString !== undefined).toBe(expectString);
      });
    }
  });

  it("refuses a topic alias above its Topic Alias Maximum with 0x94 [MQTT-4.13.1-1]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      const alias = DEFAULT_CONFIG.topicAliasMaximum + 1;
      await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 0, properties: { topicAlias: alias } });
      expect(io.take("disconnect")[0]?.reasonCode).toBe(0x94);
    });
  });

  it("maps a client's topic alias to its topic [MQTT-3.3.2-12]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      await send({
        cmd: "publish",
        topic: "long/topic",
        payload: Buffer.from("1"),
        qos: 0,
        properties: { topicAlias: 3 },
      });
      await send({ cmd: "publish", topic: "", payload: Buffer.from("2"), qos: 0, properties: { topicAlias: 3 } });
      expect(io.routed.map((m) => m.topic)).toEqual(["long/topic", "long/topic"]);
    });
  });

  it("treats an unset topic alias with an empty topic as a protocol error [U-5.0-empty-topic]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      await send({ cmd: "publish", topic: "", payload: Buffer.from("2"), qos: 0, properties: { topicAlias: 4 } });
      expect(io.take("disconnect")[0]?.reasonCode).toBe(0x82);
    });
  });

  it("uses topic aliases towards a client within its maximum [MQTT-3.1.2-26, 3.3.2-11]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(connect(5, { properties: { topicAliasMaximum: 1 } }));
      const d = (id: string, topic: string): Delivery => ({
        ...delivery(id, 0),
        message: { ...delivery(id, 0).message, topic },
      });
      session.deliver([d("1", "t/a"), d("2", "t/a"), d("3", "t/b")]);
      const sent = io.take("publish").map((p) => [p.topic, p.properties?.topicAlias]);
      expect(sent).toEqual([
        ["t/a", 1],
        ["", 1],
        ["t/b", undefined],
      ]);
    });
  });

  it("answers a PUBLISH declared UTF-8 with an invalid payload with 0x99", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      await send({
        cmd: "publish",
        topic: "a",
        payload: Buffer.from([0xff, 0xfe]),
        qos: 1,
        messageId: 5,
        properties: { payloadFormatIndicator: true },
      });
      expect(io.take("puback")[0]).toMatchObject({ messageId: 5, reasonCode: 0x99 });
      expect(io.routed).toHaveLength(0);
    });
  });

  it("answers 0x10 when no one subscribes, and omits reason strings when asked [MQTT-3.1.2-29]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5, { properties: { requestProblemInformation: false } }));
      io.routeResult = async () => 0;
      await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 6 });
      await until(() => io.take("puback").length === 1, "the PUBACK");
      expect(io.take("puback")[0]).toMatchObject({ messageId: 6, reasonCode: 0x10 });
      await send({
        cmd: "publish",
        topic: "a",
        payload: Buffer.from([0xff]),
        qos: 1,
        messageId: 7,
        properties: { payloadFormatIndicator: true },
      });
      const refusal = at(io.take("puback"), 1);
      expect(refusal.reasonCode).toBe(0x99);
      expect(refusal.properties?.reasonString).toBeUndefined();
    });
  });

  it("on unsubscribing a shared subscription, hands its queued messages to the group and completes those sent [MQTT-3.10.4-3]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(connect(5, { properties: { receiveMaximum: 1 } }));
      await send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t/#", qos: 1 }] });
      const shared = (id: string): Delivery => ({ ...delivery(id, 1), shareFilter: "$share/g/t/#" });
      session.deliver([shared("s1"), shared("s2")]);
      const [sent] = atLeast(io.take("publish"), 1); // s2 waits behind the window of 1
      await send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["$share/g/t/#"] });
      expect(io.redistributed.map((m) => new TextDecoder().decode(m.payload))).toEqual(["s2"]);
      expect(session.describe()).toMatchObject({ inflight: 1, queued: 0 }); // s1 stays, to be completed
      await send({ cmd: "puback", messageId: sent.messageId });
      expect(session.describe()).toMatchObject({ inflight: 0, queued: 0 });
    });
  });

  it("treats No Local on a shared subscription as a protocol error [MQTT-3.8.3-4]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      await send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t", qos: 1, nl: true }] });
      expect(io.take("disconnect")[0]?.reasonCode).toBe(0x82);
    });
  });

  it("disconnects with 0x93 when more QoS 1/2 PUBLISHes are unacknowledged than Receive Maximum [U-5.0-receive-max-exceeded]", async () => {
    await withSession(
      5,
      async ({ io, send }) => {
        await send(connect(5));
        io.routeResult = () => new Promise<number>(() => undefined); // never durable
        for (let i = 1; i <= 3; i++)
          await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: i });
        expect(io.take("disconnect")[0]?.reasonCode).toBe(0x93);
      },
      { ...DEFAULT_CONFIG, receiveMaximum: 2 },
    );
  });

  it("routing at the edge: counts QoS 1 handed to the gateway until it says they were acknowledged, 0x93 beyond [MQTT-3.3.4-9]", async () => {
    await withSession(
      5,
      async ({ io, send, sendRaw }) => {
        await send(connect(5));
        const publish = (i: number) =>
          send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: i });
        await publish(1);
        await publish(2);
        expect(io.edgeOrders.map((o) => o.kind === "route" && o.packetId)).toEqual([1, 2]);
        expect(io.routed).toEqual([]); // the gateway routes them
        await sendRaw(encodeEdgeAcked({ received: 2, acked: 1 })); // the gateway sent PUBACK 1
        await publish(3);
        expect(io.take("disconnect")).toEqual([]);
        await publish(4); // 2 and 3 are still unacknowledged
        expect(io.take("disconnect")[0]?.reasonCode).toBe(0x93);
      },
      { ...DEFAULT_CONFIG, receiveMaximum: 2 },
      true,
    );
  });

  it.each([
    { acked: 0, outcome: "0x93: 2 PUBACKs held by the gateway and this PUBLISH" },
    { acked: 1, outcome: "handed over: 1 PUBACK held by the gateway and this PUBLISH" },
  ])(
    "routing at the edge: after hibernation the PUBACKs the gateway still holds count against Receive Maximum 2 ($outcome) [MQTT-3.3.4-9]",
    async ({ acked }) => {
      await withSession(
        5,
        async ({ io, send, sql }) => {
          await send(connect(5, { clean: false, properties: { sessionExpiryInterval: 600 } }));
          await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 1 });
          await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 2 });
          expect(io.edgeOrders).toHaveLength(2); // both with the gateway

          // The object hibernates and wakes for the client's next PUBLISH: a new Session over the same
          // storage, as the runtime makes one. The gateway tells what it holds before that PUBLISH.
          const woken = new Session(new SqliteSessionStore(sql), io, { ...DEFAULT_CONFIG, receiveMaximum: 2 });
          const info = { connId: "conn-1", clientId: "machine-client", assignedClientId: false, routeAtEdge: true };
          await woken.receive(info, encodeEdgeAcked({ received: 2, acked }), 5);
          const third = { cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 3 } as const;
          await woken.receive(info, bytes(third, 5), 5);
          const refused = acked === 0;
          expect(io.take("disconnect").map((d) => d.reasonCode)).toEqual(refused ? [0x93] : []);
          expect(io.edgeOrders).toHaveLength(refused ? 2 : 3);
        },
        { ...DEFAULT_CONFIG, receiveMaximum: 2 },
        true,
      );
    },
  );

  it("routing at the edge: a refusal's PUBACK goes to the gateway after the routed message before it [MQTT-4.6.0-2]", async () => {
    await withSession(
      5,
      async ({ io, send }) => {
        await send(connect(5));
        await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 1 });
        await send({ cmd: "publish", topic: "$SYS/x", payload: Buffer.from("x"), qos: 1, messageId: 2 });
        expect(io.take("puback")).toEqual([]); // the gateway sends every QoS 1 PUBACK, in order
        expect(io.edgeOrders.map((o) => o.kind)).toEqual(["route", "ack"]);
      },
      DEFAULT_CONFIG,
      true,
    );
  });

  it("a refusal's PUBACK 0x87 waits for the routing of the PUBLISH before it [MQTT-4.6.0-2]", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      let durable!: (matched: number) => void;
      io.routeResult = () => new Promise<number>((resolve) => (durable = resolve));
      await send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 1, messageId: 1 });
      await send({ cmd: "publish", topic: "$SYS/x", payload: Buffer.from("x"), qos: 1, messageId: 2 });
      await send({ cmd: "pingreq" }); // handled: the refusal was decided
      await until(() => io.take("pingresp").length === 1, "PINGRESP");
      expect(io.take("puback")).toEqual([]);
      durable(1);
      await until(() => io.take("puback").length === 2, "both PUBACKs");
      expect(io.take("puback").map((a) => [a.messageId, a.reasonCode])).toEqual([
        [1, 0],
        [2, 0x87],
      ]);
    });
  });

  it("refuses to extend a session with expiry 0 at DISCONNECT", async () => {
    await withSession(5, async ({ io, send }) => {
      await send(connect(5));
      await send({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
      expect(io.take("disconnect")[0]?.reasonCode).toBe(0x82);
    });
  });

  it("answers SUBSCRIBE with per-filter codes: invalid filter, empty share name, over quota [MQTT-4.8.2-1]", async () => {
    await withSession(
      5,
      async ({ io, send }) => {
        await send(connect(5));
        await send({
          cmd: "subscribe",
          messageId: 4,
          subscriptions: [
            { topic: "ok/+", qos: 2 },
            { topic: "bad/#/x", qos: 0 },
            { topic: "$share//x", qos: 1 },
            { topic: "second", qos: 1 },
          ],
        });
        expect(at(io.take("suback"), 0).granted).toEqual([2, 0x8f, 0x8f, 0x97]);
        expect(io.subscribed.map((s) => s.filter)).toEqual(["ok/+"]);
      },
      { ...DEFAULT_CONFIG, maxSubscriptions: 1 },
    );
  });

  it("reports the connection's start and end and each dropped message, never per delivered message", async () => {
    const small = { ...DEFAULT_CONFIG, maxQueuedMessages: 3 };
    await withSession(
      5,
      async ({ session, io, send }) => {
        await send(connect(5, { properties: { receiveMaximum: 1, maximumPacketSize: 64 } }));
        expect(io.events).toMatchObject([
          {
            kind: "connected",
            record: { clientId: "machine-client", connId: "conn-1", version: 5, sessionPresent: false },
          },
        ]);
        const big: Delivery = {
          ...delivery("big", 1),
          message: { ...delivery("big", 1).message, payload: new Uint8Array(200) },
        };
        session.deliver([delivery("m1", 1), big, delivery("m3", 1), delivery("m4", 1)]);
        // m1 in flight; "big" and m3 queued; m4 beyond the queue of 3. Once m1 is acknowledged, "big"
        // turns out too large for the client's 64 bytes and m3 goes out.
        const [m1] = atLeast(io.take("publish"), 1);
        await send({ cmd: "puback", messageId: m1.messageId });
        expect(io.take("publish").map((p) => p.payload.toString())).toEqual(["m1", "m3"]);
        expect(
          io.events
            .filter((e) => e.kind === "dropped")
            .map((e) => e.kind === "dropped" && e.reason)
            .sort(),
        ).toEqual(["queue_full", "too_large_for_client"]);
        await session.ended("conn-1");
        expect(io.events.at(-1)).toMatchObject({ kind: "disconnected", clientId: "machine-client", connId: "conn-1" });
      },
      small,
    );
  });

  it("describes itself and obeys an administrator: DISCONNECT 0x98 with the will sent, then deletion", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(
        connect(5, {
          clean: false,
          properties: { sessionExpiryInterval: 100 },
          will: { topic: "w", payload: Buffer.from("bye"), qos: 0 },
        }),
      );
      await send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a/#", qos: 1 }] });
      const d = session.describe()!;
      expect(d).toMatchObject({
        clientId: "machine-client",
        connected: true,
        protocolVersion: 5,
        expiryInterval: 100,
        hasWill: true,
        queued: 0,
        inflight: 0,
      });
      expect(d.subscriptions.map((x) => x.filter)).toEqual(["a/#"]);
      expect(await session.adminDisconnect()).toBe(true);
      expect(at(io.take("disconnect"), 0).reasonCode).toBe(0x98);
      expect(io.routed.map((m) => m.topic)).toEqual(["w"]); // closed without the client's DISCONNECT [MQTT-3.1.2-8]
      expect(session.describe()).toMatchObject({ connected: false, expiresAt: io.time + 100_000 });
      expect(await session.adminDisconnect()).toBe(false);
      expect(await session.adminDelete()).toBe(true);
      expect(session.describe()).toBeUndefined();
      expect(await session.adminDelete()).toBe(false);
    });
  });

  it("delays the will and arms an alarm when the connection drops [MQTT-3.1.3-9]", async () => {
    await withSession(5, async ({ session, io, send }) => {
      await send(
        connect(5, {
          clean: false,
          properties: { sessionExpiryInterval: 100 },
          will: { topic: "w", payload: Buffer.from("bye"), qos: 1, properties: { willDelayInterval: 10 } },
        }),
      );
      await session.ended("conn-1");
      expect(io.routed).toHaveLength(0);
      expect(io.alarm).toBe(io.time + 10_000);
      io.time += 10_000;
      await session.alarm();
      expect(io.routed.map((m) => m.topic)).toEqual(["w"]);
      expect(io.alarm).toBe(1_000_000 + 100_000); // then the session's expiry
    });
  });

  it("resends unacknowledged PUBLISH with DUP and PUBREL on resumption [MQTT-4.4.0-1] [MQTT311-4.4.0-1, 4.6.0-1]", async () => {
    await withSession(4, async ({ session, io, send }) => {
      await send(connect(4, { clean: false }));
      session.deliver([delivery("q1", 1), delivery("q2", 2), delivery("q3", 1), delivery("q4", 2)]);
      const [p1, p2, p3, p4] = atLeast(io.take("publish"), 4);
      await send({ cmd: "pubrec", messageId: p2.messageId });
      await session.ended("conn-1");
      io.out = [];
      const info = { connId: "conn-2", clientId: "machine-client", assignedClientId: false };
      await session.receive(info, bytes(connect(4, { clean: false }), 4), undefined);
      expect(at(io.take("connack"), 0).sessionPresent).toBe(true);
      // [MQTT311-4.6.0-1] resent in the order first sent
      const again = io.take("publish");
      expect(again.map((p) => [p.messageId, p.dup])).toEqual([
        [p1.messageId, true],
        [p3.messageId, true],
        [p4.messageId, true],
      ]);
      expect(io.take("pubrel").map((p) => p.messageId)).toEqual([p2.messageId]);
    });
  });
});

/** The outbound queue's rows (state, packet id, message id) in order; none when the table was never made. */
function outq(sql: SqlStorage): [number, number | null, string][] {
  const made = sql.exec(`SELECT 1 FROM sqlite_master WHERE name = 'outq'`).toArray().length > 0;
  if (!made) return [];
  return sql
    .exec<{ state: number; packet_id: number | null; msg_id: string }>(
      `SELECT state, packet_id, msg_id FROM outq ORDER BY seq`,
    )
    .toArray()
    .map((r) => [r.state, r.packet_id, r.msg_id]);
}

/** Whether a promise has settled by now (after pending microtasks ran). */
async function settled(p: unknown): Promise<boolean> {
  let done = false;
  void Promise.resolve(p).then(() => (done = true));
  await quiet();
  return done;
}

/**
 * Lets every pending microtask run (one macrotask turn, no time waited). Here the session's I/O is
 * synchronous SQLite and promises the test settles itself, so after this nothing more happens
 * until the test acts: what has not been sent by then is not going to be.
 */
function quiet(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

describe("publish rate (MAX_PUBLISH_RATE)", () => {
  it("routes QoS 1 beyond the rate at once but acknowledges it only at the rate, in order; cuts beyond twice", async () => {
    const config = { ...DEFAULT_CONFIG, maxPublishRate: 2 };
    await withSession(
      5,
      async ({ io, send }) => {
        await send(connect(5));
        const publish = (messageId: number) =>
          send({ cmd: "publish", topic: "a", payload: Buffer.from(String(messageId)), qos: 1, messageId });
        for (const id of [1, 2, 3, 4]) await publish(id); // all at one instant: twice the rate
        await until(() => io.take("puback").length === 2, "the PUBACKs within the rate");
        expect(io.routed).toHaveLength(4); // the slowed ones are routed, not held back
        await quiet();
        expect(io.take("puback").map((p) => p.messageId)).toEqual([1, 2]); // the rest wait for their time
        expect(io.closed).toEqual([]);
        // each slowed PUBACK waits for its own timer, set once the one before it is sent
        await until(() => (io.runTimers(), io.take("puback").length === 4), "the slowed PUBACKs");
        expect(io.take("puback").map((p) => p.messageId)).toEqual([1, 2, 3, 4]);
        await publish(5); // beyond twice the rate
        await until(() => io.closed.includes("conn-1"), "the connection closed");
        expect(io.take("disconnect")[0]).toMatchObject({
          reasonCode: 0x96,
          properties: { reasonString: "more than twice 2 PUBLISH/s" },
        });
        expect(io.routed).toHaveLength(4);
      },
      config,
    );
  });

  it("drops QoS 0 beyond the rate and reports the drops together, not one by one", async () => {
    await withSession(
      4,
      async ({ io, send }) => {
        await send(connect(4));
        for (let i = 0; i < 5; i++) await send({ cmd: "publish", topic: "a", payload: Buffer.from(String(i)), qos: 0 });
        expect(io.routed.map((m) => new TextDecoder().decode(m.payload))).toEqual(["0", "1", "2"]);
        expect(io.events.filter((e) => e.kind === "dropped")).toEqual([]); // reported a second later
        io.runTimers();
        expect(io.events.filter((e) => e.kind === "dropped")).toEqual([
          { kind: "dropped", clientId: "machine-client", reason: "publish_rate", count: 2 },
        ]);
        expect(io.closed).toEqual([]);
      },
      { ...DEFAULT_CONFIG, maxPublishRate: 3 },
    );
  });
});

describe("QoS 1 to an online client: acknowledged or written (ACK_WAIT_MS)", () => {
  it("a message acknowledged in time settles its delivery and is never written", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      await send(connect(5));
      const delivered = session.deliver([delivery("a1", 1), delivery("a2", 1)], false, true);
      const [p1, p2] = atLeast(io.take("publish"), 2);
      expect(outq(sql)).toEqual([]);
      await send({ cmd: "puback", messageId: p1.messageId });
      expect(await settled(delivered)).toBe(false); // a2 is neither acknowledged nor written
      await send({ cmd: "puback", messageId: p2.messageId });
      expect(await settled(delivered)).toBe(true);
      expect(await delivered).toBe("ok");
      io.runTimers(); // the wait ends with nothing left to write
      expect(outq(sql)).toEqual([]);
    });
  });

  it("a message not acknowledged within the wait is written as in flight, and its PUBACK finishes it", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      await send(connect(5));
      const delivered = session.deliver([delivery("b1", 1)], false, true);
      const [p1] = atLeast(io.take("publish"), 1);
      expect(await settled(delivered)).toBe(false);
      io.runTimers();
      expect(await settled(delivered)).toBe(true);
      expect(outq(sql)).toEqual([[1, p1.messageId, "b1"]]); // OutState.SENT
      await send({ cmd: "puback", messageId: p1.messageId });
      expect(outq(sql)).toEqual([]);
    });
  });

  it("a connection that ends first keeps them for resumption, resent in the order first sent [MQTT-4.4.0-1, 4.6.0-1]", async () => {
    await withSession(4, async ({ session, io, send }) => {
      await send(connect(4, { clean: false }));
      const first = session.deliver([delivery("c1", 1)], false, true);
      session.deliver([delivery("c2", 2)], false, true); // QoS 2 is always written at once
      const third = session.deliver([delivery("c3", 1)], false, true);
      const sent = io.take("publish").map((p) => [p.messageId, p.payload.toString()]);
      expect(sent.map(([, m]) => m)).toEqual(["c1", "c2", "c3"]);
      await session.ended("conn-1");
      expect(await settled(first)).toBe(true);
      expect(await settled(third)).toBe(true);
      io.out = [];
      const info = { connId: "conn-2", clientId: "machine-client", assignedClientId: false };
      await session.receive(info, bytes(connect(4, { clean: false }), 4), undefined);
      const again = io.take("publish");
      expect(again.map((p) => [p.messageId, p.payload.toString()])).toEqual(sent);
      expect(again.every((p) => p.dup)).toBe(true);
    });
  });

  it("a session that ends with its connection settles them without writing", async () => {
    await withSession(4, async ({ session, io, sql, send }) => {
      await send(connect(4, { clean: true }));
      const delivered = session.deliver([delivery("d1", 1)], false, true);
      expect(io.take("publish")).toHaveLength(1);
      await session.ended("conn-1");
      expect(await settled(delivered)).toBe(true);
      expect(outq(sql)).toEqual([]);
    });
  });

  it("a burst beyond the window waits unwritten and goes as PUBACKs free room; none written when acknowledged in time", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      await send(connect(5, { properties: { receiveMaximum: 2 } }));
      const delivered = session.deliver(
        ["w1", "w2", "w3", "w4"].map((m) => delivery(m, 1)),
        false,
        true,
      );
      const first = io.take("publish");
      expect(first.map((p) => p.payload.toString())).toEqual(["w1", "w2"]); // [MQTT-4.9.0-2]
      expect(outq(sql)).toEqual([]); // w3, w4 wait in memory
      for (const p of first) await send({ cmd: "puback", messageId: p.messageId });
      const next = io.take("publish").slice(2);
      expect(next.map((p) => p.payload.toString())).toEqual(["w3", "w4"]);
      expect(await settled(delivered)).toBe(false); // w3, w4 are neither acknowledged nor written
      for (const p of next) await send({ cmd: "puback", messageId: p.messageId });
      expect(await settled(delivered)).toBe(true);
      io.runTimers(); // every wait ends with nothing left to write
      expect(outq(sql)).toEqual([]);
    });
  });

  it("a message still waiting for the window when the wait ends is written as queued, then sent in order", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      await send(connect(5, { properties: { receiveMaximum: 2 } }));
      const delivered = session.deliver(
        ["x1", "x2", "x3"].map((m) => delivery(m, 1)),
        false,
        true,
      );
      const first = io.take("publish");
      expect(await settled(delivered)).toBe(false);
      io.runTimers(); // ACK_WAIT_MS: x1, x2 unacknowledged, x3 unsent
      expect(await settled(delivered)).toBe(true);
      expect(outq(sql).map(([state, , id]) => [state, id])).toEqual([
        [1, "x1"], // OutState.SENT
        [1, "x2"],
        [0, "x3"], // OutState.QUEUED
      ]);
      await send({ cmd: "puback", messageId: at(first, 0).messageId });
      expect(io.take("publish").map((p) => p.payload.toString())).toEqual(["x1", "x2", "x3"]);
    });
  });

  it("counts them against the in-flight window and the queue limit [MQTT-4.9.0-2]", async () => {
    await withSession(
      5,
      async ({ session, io, send, sql }) => {
        await send(connect(5, { properties: { receiveMaximum: 2 } }));
        session.deliver([delivery("e1", 1), delivery("e2", 1), delivery("e3", 1)], false, true);
        const first = io.take("publish");
        expect(first.map((p) => p.payload.toString())).toEqual(["e1", "e2"]);
        // e3 waits behind the window, in memory: under ACK_WAIT nothing is written yet
        expect(outq(sql)).toEqual([]);
        session.deliver([delivery("e4", 1)], false, true); // 2 unstored + 1 waiting: the queue is full
        expect(io.events.filter((e) => e.kind === "dropped")).toHaveLength(1);
        await send({ cmd: "puback", messageId: at(first, 0).messageId });
        const next = io.take("publish").slice(2);
        expect(next.map((p) => p.payload.toString())).toEqual(["e3"]);
        expect(new Set(io.take("publish").map((p) => p.messageId)).size).toBe(3); // no packet id reused
      },
      { ...DEFAULT_CONFIG, maxQueuedMessages: 3 },
    );
  });
});

describe("inbound QoS 2 when its connection ends during routing", () => {
  /** conn-1 connects (session kept 300 s) and sends a QoS 2 PUBLISH whose routing waits for `release`. */
  async function publishedThenHeld(version: 4 | 5, s: { io: RecordingIO; send: (p: OutgoingPacket) => Promise<void> }) {
    const keep = version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
    await s.send(connect(version, keep));
    let release!: (matched: number) => void;
    s.io.routeResult = () => new Promise<number>((resolve) => (release = resolve));
    await s.send(publish2(7, "first"));
    s.io.routeResult = async () => 1;
    return { keep, release: (n = 1) => release(n) };
  }
  const publish2 = (messageId: number, payload: string, dup = false): OutgoingPublish => ({
    cmd: "publish",
    topic: "q2/x",
    payload: Buffer.from(payload),
    qos: 2,
    messageId,
    dup,
  });
  const conn2 = { connId: "conn-2", clientId: "machine-client", assignedClientId: false };
  const pubrecsTo = (io: RecordingIO, connId: string) =>
    io.outTo.filter((o) => o.connId === connId && o.packet.cmd === "pubrec").map((o) => o.packet.messageId);

  it("routing that completes after the connection dropped is recorded; the resend on the next connection gets PUBREC, not a second routing [MQTT-4.3.3-10] [MQTT311-4.3.3-2]", async () => {
    for (const version of [4, 5] as const)
      await withSession(version, async ({ session, io, send, sql }) => {
        const { keep, release } = await publishedThenHeld(version, { io, send });
        await session.ended("conn-1"); // dropped before PUBREC
        release();
        await until(() => inq2(sql).some(([, routed]) => routed === 1), "the inbound row marked routed");
        await session.receive(conn2, bytes(connect(version, keep), version), undefined);
        await session.receive(conn2, bytes(publish2(7, "first", true), version), version);
        await until(() => pubrecsTo(io, "conn-2").length === 1, "PUBREC on the new connection");
        expect(io.routed.map((m) => new TextDecoder().decode(m.payload))).toEqual(["first"]);
        expect(pubrecsTo(io, "conn-1")).toEqual([]);
        await session.receive(conn2, bytes({ cmd: "pubrel", messageId: 7 }, version), version);
        await until(() => io.take("pubcomp").length === 1, "PUBCOMP");
        // No longer awaiting PUBREL: released (2, the first release), kept to answer a resent PUBREL 0x00
        expect(inq2(sql)).toEqual([[7, 2]]);
      });
  });

  it("a resend on a new connection of the session while the first copy is still routing waits for it and is not routed again [MQTT-4.3.3-10]", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      const { keep, release } = await publishedThenHeld(5, { io, send });
      // Taken over (no close seen first): the first connection is no longer the session's.
      await session.receive(conn2, bytes(connect(5, keep), 5), undefined);
      await session.receive(conn2, bytes(publish2(7, "first", true), 5), 5);
      await quiet(); // the routing is held: nothing can answer yet
      expect(pubrecsTo(io, "conn-2")).toEqual([]);
      release();
      await until(() => pubrecsTo(io, "conn-2").length === 1, "PUBREC on the new connection");
      expect(io.routed).toHaveLength(1);
      expect(pubrecsTo(io, "conn-1")).toEqual([]);
      expect(inq2(sql).map(([, routed]) => routed)).toEqual([1]);
    });
  });

  it("a clean start during the routing forgets it: the same packet id on the new session is a new message [MQTT-3.1.2-4, 4.3.3-12]", async () => {
    await withSession(5, async ({ session, io, send, sql }) => {
      const { release } = await publishedThenHeld(5, { io, send });
      await session.receive(
        conn2,
        bytes(connect(5, { clean: true, properties: { sessionExpiryInterval: 300 } }), 5),
        undefined,
      );
      await session.receive(conn2, bytes(publish2(7, "second"), 5), 5);
      release(); // the old session's routing ends after the new session took packet id 7
      await until(() => pubrecsTo(io, "conn-2").length === 1, "PUBREC for the new message");
      expect(io.routed.map((m) => new TextDecoder().decode(m.payload))).toEqual(["first", "second"]);
      expect(at(io.routed, 1).id).not.toBe(at(io.routed, 0).id);
      expect(inq2(sql)).toEqual([[7, 1]]);
    });
  });
});

/** The inbound QoS 2 rows as [packet id, routed]; none when the table was never made. */
function inq2(sql: SqlStorage): [number, number][] {
  const made = sql.exec(`SELECT 1 FROM sqlite_master WHERE name = 'inq2'`).toArray().length > 0;
  if (!made) return [];
  return sql
    .exec<{ packet_id: number; routed: number }>(`SELECT packet_id, routed FROM inq2 ORDER BY packet_id`)
    .toArray()
    .map((r) => [r.packet_id, r.routed]);
}
