/**
 * The bridge's MQTT client, as a state machine over bytes (no sockets, no clock of its own): the
 * Bridge object (bridge-object.ts) feeds it what the remote broker sends and writes what it returns.
 *
 * - CONNECT with the bridge's client id, keep-alive, clean start / session expiry and credentials;
 *   after CONNACK, SUBSCRIBE to every `in` mapping (MQTT 5: No Local, so nothing the bridge
 *   publishes comes back to it [MQTT-3.8.3-3]), then the messages left unacknowledged are sent
 *   again [MQTT-4.4.0-1] and the queue is drained.
 * - Inbound PUBLISH: handed to `deliverLocal`; a QoS 1 PUBACK or QoS 2 PUBREC goes upstream only
 *   once it resolved (the message is in this broker's shards), in the order the PUBLISHes came
 *   [MQTT-4.6.0-2]. A QoS 2 packet id waits for its PUBREL in the store, so a resent PUBLISH is not
 *   routed twice.
 * - Outbound: QoS 1/2 messages wait in the store (durable in the object) until the remote's PUBACK
 *   or PUBCOMP; at most `maxInflight` (and the remote's Receive Maximum) are in flight. A v5 message's
 *   Message Expiry Interval goes out less the time it waited since this broker received it
 *   [MQTT-3.3.2-6]; one that expired before it was first sent is dropped [MQTT-3.3.2-5], one already
 *   sent is not [MQTT-4.3.3-7]. A PUBACK or PUBREC with a reason code of 0x80 or more ends the flow
 *   (no PUBREL [MQTT-4.3.3-4]): the remote refused the message, which is dropped and counted.
 * - Keep-alive: PINGREQ when nothing was sent for the keep-alive; no PINGRESP within another: closed.
 */
import type { BridgeConfig } from "./bridge-config";
import { encodePacket, parsePacket, type EncodablePacket } from "../protocol/codec";
import { PacketFramer } from "../protocol/framer";
import type { Packet, PublishPacket } from "../protocol/packets";
import type { MessageProperties, QoS } from "../protocol/message";
import { messagePropertiesFrom, remainingExpiry } from "../protocol/properties";
import { remoteSubscriptions } from "./topic-map";

/** A message in the outbound queue. `packetId` is set once it was sent; `released` once PUBREC came (QoS 2). */
export interface QueuedMessage {
  seq: number;
  topic: string;
  payload: Uint8Array;
  qos: 1 | 2;
  retain: boolean;
  properties?: MessageProperties;
  packetId?: number;
  released?: boolean;
  /** When this broker received it (ms): its Message Expiry Interval runs from here. */
  receivedAt: number;
}

/** A message for the remote broker, before it is queued. */
export type OutboundMessage = Omit<QueuedMessage, "seq" | "packetId" | "released" | "qos" | "receivedAt"> & {
  qos: QoS;
  /** Unknown: the time it is offered. */
  receivedAt?: number;
};

/** Why a message for the remote was not sent (counted in BridgeCounts, and in /metrics by this reason). */
export type BridgeDropReason = "offline" | "queue_full" | "expired" | "refused";

/** A message from the remote broker for this one. */
export interface InboundMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
}

/** Where the queue and the QoS 2 packet ids live (SQLite in the object; memory in unit tests). */
export interface BridgeStore {
  /** Every queued message, oldest first, and the counts last saved (on start). */
  load(): { queue: QueuedMessage[]; inboundQos2: number[]; counts?: Partial<BridgeCounts> };
  /** Writes the counts (one row): BridgeClient.saveCounts decides when. */
  saveCounts(counts: BridgeCounts): void;
  add(message: Omit<QueuedMessage, "seq">): number;
  update(message: QueuedMessage): void;
  remove(seq: number): void;
  addInboundQos2(packetId: number): void;
  removeInboundQos2(packetId: number): void;
}

export interface BridgeIO {
  send(bytes: Uint8Array): void;
  /** Ends the connection (the object reconnects after its backoff). */
  close(reason: string): void;
  /** Routes a message here; resolves once every QoS 1/2 subscriber has it durably. */
  deliverLocal(message: InboundMessage): Promise<void>;
  /** A message for the remote was dropped (for the log; the count is the client's). */
  dropped?(reason: BridgeDropReason, topic: string): void;
  now(): number;
}

export type BridgeState = "disconnected" | "connecting" | "connected";

/**
 * A bridge's state, for the admin API, metrics and the dashboard. Counts are since the bridge was
 * created; they are saved with the object's alarm and on each connect and disconnect, so a crash
 * loses at most the counts of the last ALARM_MS (bridge-object.ts), an eviction none.
 */
export interface BridgeStatus extends BridgeCounts {
  name: string;
  /** unreachable: the Worker could not call the object (bridge-worker.ts). */
  state: BridgeState | "unconfigured" | "unreachable";
  lastError: string;
  queuedMessages: number;
  queuedBytes: number;
}

export interface BridgeCounts {
  /** Messages from the remote routed here. */
  received: number;
  /** Messages sent to the remote and acknowledged (QoS 0: written). */
  sent: number;
  /** QoS 0 messages dropped while disconnected. */
  droppedOffline: number;
  /** QoS 1/2 messages dropped because the queue was full (maxQueuedMessages or maxQueuedBytes). */
  droppedFull: number;
  /** Messages whose Message Expiry Interval ran out before they were first sent [MQTT-3.3.2-5]. */
  droppedExpired: number;
  /** QoS 1/2 messages the remote refused: PUBACK or PUBREC with a reason code of 0x80 or more. */
  droppedRefused: number;
  /** Local messages no mapping sends out, or remote ones no mapping brings in (or not a valid topic here). */
  unmapped: number;
}

export const NO_COUNTS: Readonly<BridgeCounts> = {
  received: 0,
  sent: 0,
  droppedOffline: 0,
  droppedFull: 0,
  droppedExpired: 0,
  droppedRefused: 0,
  unmapped: 0,
};

/** Longest text taken from the remote (a CONNACK's or DISCONNECT's Reason String) into lastError. */
export const REMOTE_REASON_CHARS = 200;

/** Largest packet the bridge takes from the remote (it tells an MQTT 5 remote in CONNECT). */
export const BRIDGE_MAX_PACKET = 1048576;

/**
 * QoS 1/2 messages an MQTT 5 remote may send before the bridge acknowledged them (each waits for its
 * shard). A 3.1.1 remote decides alone (Mosquitto: max_inflight_messages, 20 by default).
 */
export const BRIDGE_RECEIVE_MAXIMUM = 64;

/**
 * Messages from the remote waiting for their shard: at this many the object stops reading the TCP
 * socket until they are routed, so a remote faster than the shards (QoS 0 has no window) fills
 * its own send buffer, not this object's memory. A WebSocket cannot be paused: there the remote's
 * Receive Maximum (QoS 1/2) is the only bound.
 */
export const INBOUND_PENDING_LIMIT = 256;

export class BridgeClient {
  state: BridgeState = "disconnected";
  lastError = "";
  readonly counts: BridgeCounts;
  /** The counts as last saved (JSON): saveCounts writes only when they changed. */
  private savedCounts: string;
  private queue: QueuedMessage[];
  private queuedBytes = 0;
  private readonly inboundQos2: Set<number>;
  /** Packet id -> queued message, for the messages in flight. */
  private readonly inflight = new Map<number, QueuedMessage>();
  private nextPacketId = 1;
  private window: number;
  private framer = new PacketFramer(BRIDGE_MAX_PACKET);
  private lastSentAt = 0;
  private pingSentAt: number | undefined;
  /** Acknowledgements of inbound messages go in the order their PUBLISHes came. */
  private acks: Promise<void> = Promise.resolve();
  /** Messages from the remote not yet routed here (the object stops reading at INBOUND_PENDING_LIMIT). */
  inboundPending = 0;
  /** Bumped per connection: an acknowledgement for an earlier one is not sent on this one. */
  private connection = 0;

  constructor(
    private readonly config: BridgeConfig,
    private readonly io: BridgeIO,
    private readonly store: BridgeStore,
    private readonly credentials: { username?: string; password?: string } = {},
  ) {
    const loaded = store.load();
    this.counts = { ...NO_COUNTS, ...loaded.counts };
    this.savedCounts = JSON.stringify(this.counts);
    this.queue = loaded.queue;
    for (const m of this.queue) this.queuedBytes += bytesOf(m);
    this.inboundQos2 = new Set(loaded.inboundQos2);
    this.window = config.maxInflight;
  }

  /** Resolves once every message from the remote received so far is routed (or failed). */
  inboundSettled(): Promise<void> {
    return this.acks;
  }

  get queuedMessages(): number {
    return this.queue.length;
  }

  get queuedByteCount(): number {
    return this.queuedBytes;
  }

  /** Writes the counts to the store if they changed since the last save (one row); answers whether it wrote. */
  saveCounts(): boolean {
    const now = JSON.stringify(this.counts);
    if (now === this.savedCounts) return false;
    this.store.saveCounts({ ...this.counts });
    this.savedCounts = now;
    return true;
  }

  /** The transport is open: CONNECT. */
  opened(): void {
    this.connection++;
    this.state = "connecting";
    this.framer = new PacketFramer(BRIDGE_MAX_PACKET);
    this.inflight.clear();
    this.pingSentAt = undefined;
    this.window = this.config.maxInflight;
    const { protocol, clientId, keepalive, cleanStart, sessionExpiry } = this.config;
    this.write({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: protocol,
      clientId,
      keepalive,
      clean: cleanStart,
      ...(this.credentials.username !== undefined ? { username: this.credentials.username } : {}),
      ...(this.credentials.password !== undefined ? { password: Buffer.from(this.credentials.password) } : {}),
      ...(protocol === 5
        ? {
            properties: {
              sessionExpiryInterval: sessionExpiry,
              maximumPacketSize: BRIDGE_MAX_PACKET,
              receiveMaximum: BRIDGE_RECEIVE_MAXIMUM,
            },
          }
        : {}),
    });
  }

  /** The transport closed (or failed): messages in flight are sent again after the next CONNACK. */
  closed(reason: string): void {
    if (reason) this.lastError = reason;
    this.state = "disconnected";
    this.inflight.clear();
  }

  /** Bytes from the remote broker. */
  received(bytes: Uint8Array): void {
    const framed = this.framer.push(bytes);
    for (const raw of framed.packets) {
      const parsed = parsePacket(raw, this.config.protocol);
      if ("error" in parsed) return this.fail(`malformed packet from the remote: ${parsed.error}`);
      this.handle(parsed.packet);
      if (this.state === "disconnected") return;
    }
    if (framed.error) this.fail(`packet from the remote: ${framed.error}`);
  }

  /** Keep-alive [MQTT-3.1.2-20]: called every few seconds by the object. */
  tick(): void {
    if (this.state !== "connected") return;
    const now = this.io.now();
    const period = this.config.keepalive * 1000;
    if (this.pingSentAt !== undefined && now - this.pingSentAt >= period)
      return this.fail("no PINGRESP from the remote");
    if (this.pingSentAt === undefined && now - this.lastSentAt >= period) {
      this.pingSentAt = now;
      this.write({ cmd: "pingreq" });
    }
  }

  /**
   * A local message for the remote (already mapped). QoS 0 is written when connected, else dropped
   * and counted; QoS 1/2 is queued and sent in turn. At the queue's limit the new message is dropped
   * and counted, as a session's queue does: the local publisher is acknowledged all the same (a
   * remote that is away must not hold up this broker's clients). Answers what became of it.
   */
  offer(message: OutboundMessage): "sent" | "queued" | "offline" | "full" | "expired" {
    if (this.expired(message)) {
      this.drop("expired", message);
      return "expired";
    }
    if (message.qos === 0) {
      if (this.state !== "connected") {
        this.drop("offline", message);
        return "offline";
      }
      this.write(this.publishPacket(message, undefined, false));
      this.counts.sent++;
      return "sent";
    }
    const size = bytesOf(message);
    if (this.queue.length >= this.config.maxQueuedMessages || this.queuedBytes + size > this.config.maxQueuedBytes) {
      this.drop("queue_full", message);
      return "full";
    }
    const queued = { ...message, qos: message.qos, receivedAt: message.receivedAt ?? this.io.now() };
    const seq = this.store.add(queued);
    this.queue.push({ ...queued, seq });
    this.queuedBytes += size;
    this.pump();
    return "queued";
  }

  private handle(packet: Packet): void {
    switch (packet.cmd) {
      case "connack":
        return this.connack(packet);
      case "publish":
        return this.inbound(packet);
      case "puback":
        return this.acknowledged(packet.messageId, packet.reasonCode);
      case "pubcomp":
        return this.acknowledged(packet.messageId);
      case "pubrec": {
        const message = this.inflight.get(packet.messageId!);
        // v5: a reason code of 0x80 or more ends the flow: no PUBREL [MQTT-4.3.3-4], nothing resent,
        // and the packet id is free again.
        if (message && (packet.reasonCode ?? 0) >= 0x80) return this.acknowledged(packet.messageId, packet.reasonCode);
        if (message && !message.released) {
          message.released = true;
          this.store.update(message);
        }
        return this.write({ cmd: "pubrel", messageId: packet.messageId });
      }
      case "pubrel": {
        const id = packet.messageId!;
        const connection = this.connection;
        // After the PUBREC it answers (ordered with the acks before it).
        this.acks = this.acks.then(() => {
          if (this.inboundQos2.delete(id)) this.store.removeInboundQos2(id);
          if (connection === this.connection) this.write({ cmd: "pubcomp", messageId: id });
        });
        return;
      }
      case "suback": {
        const refused = packet.granted.filter((g) => (typeof g === "number" ? g : 0x80) >= 0x80).length;
        if (refused) this.lastError = `the remote refused ${refused} subscription(s)`;
        return;
      }
      case "pingresp":
        this.pingSentAt = undefined;
        return;
      case "disconnect":
        return this.fail(
          `the remote disconnected (reason ${packet.reasonCode ?? 0})${remoteReason(packet.properties?.reasonString)}`,
        );
      default:
        return this.fail(`unexpected ${packet.cmd} from the remote`);
    }
  }

  private connack(packet: Extract<Packet, { cmd: "connack" }>): void {
    if (this.state !== "connecting") return this.fail("a second CONNACK");
    const code = packet.reasonCode ?? packet.returnCode ?? 0;
    if (code !== 0) {
      return this.fail(
        `the remote refused the connection (code ${code})${remoteReason(packet.properties?.reasonString)}`,
      );
    }
    this.state = "connected";
    this.lastError = "";
    const receiveMaximum = packet.properties?.receiveMaximum;
    if (receiveMaximum) this.window = Math.min(this.config.maxInflight, receiveMaximum);
    const subs = remoteSubscriptions(this.config);
    // Every time, not only when the remote lost the session: the mappings may have changed since.
    // MQTT 5: retained messages only for a subscription that is new (Retain Handling 1).
    if (subs.length) {
      this.write({
        cmd: "subscribe",
        messageId: this.packetId(),
        subscriptions: subs.map((s) => ({
          topic: s.filter,
          qos: s.qos,
          ...(this.config.protocol === 5 ? { nl: true, rap: true, rh: 1 } : {}),
        })),
      });
    }
    // [MQTT-4.4.0-1] unacknowledged PUBLISH (DUP set) and PUBREL again, in their original order.
    for (const message of this.queue) {
      if (message.packetId === undefined || this.inflight.size >= this.window) break;
      this.inflight.set(message.packetId, message);
      this.write(
        message.released
          ? { cmd: "pubrel", messageId: message.packetId }
          : this.publishPacket(message, message.packetId, true),
      );
    }
    this.pump();
  }

  private inbound(packet: PublishPacket): void {
    const message: InboundMessage = {
      topic: packet.topic,
      payload: packet.payload,
      qos: packet.qos,
      retain: packet.retain,
      properties: messagePropertiesFrom(packet.properties),
    };
    const id = packet.messageId;
    const seen = packet.qos === 2 && this.inboundQos2.has(id!);
    const routed = seen ? Promise.resolve() : this.io.deliverLocal(message);
    routed.catch(() => {}); // handled in its turn below; not an unhandled rejection meanwhile
    const connection = this.connection;
    this.inboundPending++;
    // Acknowledged in order, each once routed; a failure ends the connection unacknowledged, so the
    // remote sends it again after the reconnect.
    this.acks = this.acks.then(async () => {
      try {
        await routed;
      } catch (err) {
        if (connection === this.connection) this.fail(`routing a message from the remote failed: ${String(err)}`);
        return;
      } finally {
        this.inboundPending--;
      }
      if (!seen) this.counts.received++;
      if (packet.qos === 2 && !seen) {
        this.inboundQos2.add(id!);
        this.store.addInboundQos2(id!);
      }
      if (connection !== this.connection || packet.qos === 0) return;
      this.write({ cmd: packet.qos === 1 ? "puback" : "pubrec", messageId: id });
    });
  }

  /** The flow of a message in flight ended: acknowledged, or (reason code 0x80 or more) refused. */
  private acknowledged(packetId: number | undefined, reasonCode = 0): void {
    const message = packetId === undefined ? undefined : this.inflight.get(packetId);
    if (!message) return;
    this.inflight.delete(packetId!);
    this.unqueue(message);
    if (reasonCode >= 0x80) this.drop("refused", message);
    else this.counts.sent++;
    this.pump();
  }

  private unqueue(message: QueuedMessage): void {
    this.store.remove(message.seq);
    this.queue.splice(this.queue.indexOf(message), 1);
    this.queuedBytes -= bytesOf(message);
  }

  /** Sends queued messages not yet sent, while the window has room; drops those that expired unsent. */
  private pump(): void {
    // A full window sends nothing: return before copying a queue of up to maxQueuedMessages.
    if (this.state !== "connected" || this.inflight.size >= this.window) return;
    for (const message of [...this.queue]) {
      if (this.inflight.size >= this.window) return;
      if (message.packetId !== undefined && this.inflight.has(message.packetId)) continue;
      if (message.packetId === undefined) {
        // Not sent yet, so expiry still applies [MQTT-3.3.2-5]; once sent it does not [MQTT-4.3.3-7].
        if (this.expired(message)) {
          this.unqueue(message);
          this.drop("expired", message);
          continue;
        }
        message.packetId = this.packetId();
        this.store.update(message);
      }
      this.inflight.set(message.packetId, message);
      this.write(this.publishPacket(message, message.packetId, false));
    }
  }

  private expired(message: OutboundMessage): boolean {
    const remaining = remainingExpiry(message.properties, message.receivedAt ?? this.io.now(), this.io.now());
    return remaining !== undefined && remaining <= 0;
  }

  private drop(reason: BridgeDropReason, message: OutboundMessage): void {
    this.counts[DROP_COUNTS[reason]]++;
    this.io.dropped?.(reason, message.topic);
  }

  /**
   * The PUBLISH of a message; its properties go to an MQTT 5 remote only, its expiry less the time
   * it waited here [MQTT-3.3.2-6] (at least 1: a message sent before it expired is resent as live).
   */
  private publishPacket(message: OutboundMessage, messageId: number | undefined, dup: boolean): PublishPacket {
    const packet: PublishPacket = {
      cmd: "publish",
      topic: message.topic,
      payload: Buffer.from(message.payload),
      qos: message.qos,
      retain: message.retain,
      dup,
    };
    if (messageId !== undefined) packet.messageId = messageId;
    const p = message.properties;
    if (this.config.protocol === 5 && p) {
      const { correlationData, ...rest } = p;
      const properties: PublishPacket["properties"] = correlationData
        ? { ...rest, correlationData: Buffer.from(correlationData) }
        : { ...rest };
      const remaining = remainingExpiry(p, message.receivedAt ?? this.io.now(), this.io.now());
      if (remaining !== undefined) properties.messageExpiryInterval = Math.max(remaining, 1);
      packet.properties = properties;
    }
    return packet;
  }

  /** A packet id not held by a queued message (those that have one are at most a window or two). */
  private packetId(): number {
    const used = new Set<number>();
    for (const m of this.queue) {
      if (m.packetId === undefined) break; // ids are given in queue order
      used.add(m.packetId);
    }
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = (id % 65535) + 1;
      if (!used.has(id)) return id;
    }
  }

  private write(packet: EncodablePacket): void {
    this.lastSentAt = this.io.now();
    this.io.send(encodePacket(packet, this.config.protocol));
  }

  private fail(reason: string): void {
    this.closed(reason);
    this.lastError = reason;
    this.io.close(reason);
  }
}

const DROP_COUNTS: Record<BridgeDropReason, keyof BridgeCounts> = {
  offline: "droppedOffline",
  queue_full: "droppedFull",
  expired: "droppedExpired",
  refused: "droppedRefused",
};

function bytesOf(message: { topic: string; payload: Uint8Array }): number {
  return message.topic.length + message.payload.length;
}

/**
 * A Reason String from the remote, for lastError: the remote's own text, so hostile (the dashboard
 * shows it as text only); control characters removed and cut to REMOTE_REASON_CHARS.
 */
function remoteReason(reason: string | undefined): string {
  if (!reason) return "";
  const clean = reason.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ").slice(0, REMOTE_REASON_CHARS);
  return `: "${clean}"`;
}

/**
 * Reads the remote's bytes into the client until the transport ends. At INBOUND_PENDING_LIMIT
 * messages waiting for their shard it stops reading until they are routed, so the remote's sends
 * back up in its own socket buffer instead of this object's memory (TCP; a WebSocket cannot pause).
 */
export async function readInbound(
  read: () => Promise<{ value?: Uint8Array; done: boolean }>,
  client: BridgeClient,
  /** Whether this transport is still the current one (a replaced one's bytes are not fed). */
  current: () => boolean,
  feed: (bytes: Uint8Array) => void,
): Promise<void> {
  for (;;) {
    const { value, done } = await read();
    if (done) return;
    if (!current() || !value) continue;
    feed(value);
    if (client.inboundPending >= INBOUND_PENDING_LIMIT) await client.inboundSettled();
  }
}

/** The first reconnect waits about this long; each failed attempt doubles it, up to BACKOFF_MAX_MS. */
export const BACKOFF_FIRST_MS = 1000;
export const BACKOFF_MAX_MS = 60000;

/**
 * How long to wait before reconnect attempt `attempt` (0: the first): exponential, bounded, and drawn
 * from the upper half of its step (jitter), so that bridges cut by one outage do not return in step.
 */
export function reconnectDelay(attempt: number, random: () => number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
