/**
 * Messages to the client: deliveries from the shards, the in-flight window and the queue behind it
 * (pump), resending on resumption, packet ids, ACK_WAIT (a QoS 1 message acknowledged quickly is
 * never written), the acknowledgements of our PUBLISHes (through OutboundFlight), outgoing topic
 * aliases, and the queue-depth and drop reports.
 */
import { encodeWithin } from "../protocol/codec";
import { ReasonCode } from "../protocol/constants";
import type { Delivery, DeliveryOutcome } from "../protocol/message";
import type {
  Packet,
  PubackPacket,
  PubcompPacket,
  PublishPacket,
  PublishProperties,
  PubrecPacket,
} from "../protocol/packets";
import { remainingExpiry } from "../protocol/properties";
import { counters } from "../observability/counters";
import { SampledLog } from "../observability/log";
import { OutboundFlight } from "./outbound-flight";
import { ackPacket, type SessionContext } from "./session-context";
import type { DropReason } from "./session-io";
import { OutState, queuedMessageBytes } from "./store";

/** Queue depths are reported only at these levels: none for the shallow queues of normal traffic. */
export const QUEUE_REPORT_FLOOR = 16;

/** The reporting level of a queue depth: 0 below the floor, else the power of two at or under it. */
export function queueLevel(depth: number): number {
  return depth < QUEUE_REPORT_FLOOR ? 0 : 2 ** Math.floor(Math.log2(depth));
}

/** The queue budget a dropped message met: its variable and value (in the queue.full log line). */
interface QueueLimit {
  limit: "MAX_QUEUED_MESSAGES" | "MAX_QUEUED_BYTES";
  value: number;
}

export class Outbound {
  /** The QoS 1/2 flows to the client, and the QoS 1 messages in flight not written yet. */
  readonly flight: OutboundFlight;
  /** Topic aliases to the live connection, loaded from the store on first use (the truth across hibernation). */
  private aliases?: Map<string, number>;
  /** Last outbound packet id; in memory only (a restart resumes after the highest one in flight). */
  private lastPacketId?: number;
  /** At most one log line per 10 s for a session whose queue is full (with how many were dropped). */
  private readonly queueFullLog = new SampledLog("warn", "queue.full");

  constructor(
    private readonly session: SessionContext,
    /** Whether delivered messages need the read check (Subscriptions.readCheckNeeded). */
    private readonly readCheckNeeded: () => boolean,
  ) {
    this.flight = new OutboundFlight(session.store);
  }

  /** A new network connection: no aliases yet [MQTT-3.3.2-7]. */
  connected(): void {
    this.aliases = new Map();
  }

  /**
   * Messages from a shard. "gone" when this session does not exist (the shard forgets it);
   * "offline" without taking anything when `onlyIfOnline` and the client is not connected.
   *
   * The result settles when every QoS 1/2 message is safe here: written to the store, or, with
   * `waitForAck`, a QoS 1 message sent straight to the online client and acknowledged by it within
   * ACK_WAIT_MS (then it is never written; after ACK_WAIT_MS it is written as in flight). The shard
   * acknowledges the publisher only then, so an acknowledged message is never only in memory.
   *
   * `declined` receives the places in the batch of the shared-subscription messages declined
   * because this session may not read their topics (the shard offers each to another member).
   */
  deliver(
    batch: Delivery[],
    onlyIfOnline = false,
    waitForAck = false,
    declined?: number[],
  ): DeliveryOutcome | Promise<DeliveryOutcome> {
    const { meta, store, config } = this.session;
    if (meta.clientId === undefined) return "gone";
    const online = meta.connId !== undefined;
    if (onlyIfOnline && !online) return "offline";
    // A partially granted subscription receives only the topics its owner may read (the ACL's
    // subscribe rules on the topic name); the rest were never this subscriber's to have. A shared
    // subscription's message (offered alone) is declined instead, so the shard offers it to another
    // member of the group who may read it.
    if (this.readCheckNeeded()) {
      const readable: Delivery[] = [];
      batch.forEach((d, i) => {
        if (this.session.allowed("subscribe", d.message.topic)) readable.push(d);
        else if (d.shareFilter) declined?.push(i);
      });
      if (readable.length === 0 && batch.length === 1 && batch[0]!.shareFilter) return "unreadable";
      batch = readable;
    }
    const immediate: Packet[] = [];
    const held: number[] = [];
    const settled: Promise<void>[] = [];
    let lastWaiting: Delivery | undefined;
    let queued = false;
    for (const d of batch) {
      if (d.qos === 0) {
        // QoS 0 is not stored for an offline session (at most once).
        if (online) {
          const p = this.publishPacket(d, undefined, false);
          if (p) immediate.push(p);
        }
        continue;
      }
      const full = this.queueFull(d);
      if (full) {
        // Documented outcome: the newest QoS 1/2 message for a full session is dropped and counted.
        meta.droppedQueueFull = (meta.droppedQueueFull ?? 0) + 1;
        store.writeMeta(meta);
        this.reportDrop("queue_full", full);
        continue;
      }
      // A shared subscription's too: written when its session ends unacknowledged, then handed over
      // (OutboundFlight's keptAtEnd). QoS 2 is always written: once sent, it goes to no other member
      // [MQTT-4.8.2-5], and its exactly-once state lives in the store.
      const unstoredAllowed = waitForAck && d.qos === 1 && config.ackWaitMs > 0;
      const nothingAhead = !queued && !store.hasQueued() && !this.flight.hasWaiting();
      // Straight out when nothing is waiting ahead of it and the window has room: stored once, as
      // in flight (one row written), or not at all under ACK_WAIT. Otherwise it waits, in order.
      if (online && nothingAhead && this.windowRoom() > 0) {
        const packetId = this.nextPacketId();
        const packet = this.publishPacket(d, packetId, false);
        if (!packet) {
          this.reportDrop(this.undeliverableReason(d)); // expired or too large for the client
          continue;
        }
        if (unstoredAllowed) {
          settled.push(this.flight.sentUnstored(d, packetId));
          held.push(packetId);
          immediate.push(packet);
        } else if (this.flight.sent(d, packetId)) immediate.push(packet);
        continue;
      }
      // The window is full: under ACK_WAIT a QoS 1 message waits in memory for room (its ACK_WAIT
      // starts when it is sent, when the client can first answer it), unless written ones are ahead.
      if (online && unstoredAllowed && !queued && !store.hasQueued()) {
        settled.push(this.flight.holdUnsent(d));
        lastWaiting = d;
        continue;
      }
      this.flight.storeWaiting(true); // anything written goes behind what waits, in order
      if (store.enqueue(d, OutState.QUEUED)) queued = true;
    }
    if (online && immediate.length) this.session.send(meta.connId!, immediate);
    if (online && queued) this.pump();
    if (batch.some((d) => d.qos > 0)) this.checkQueueLevel();
    if (held.length) this.writeIfUnacknowledged(held);
    if (lastWaiting) {
      // Still unsent ACK_WAIT_MS after it arrived (the client is not acknowledging): written as
      // queued, with every message waiting behind it, so the shard's call settles.
      const newest = lastWaiting;
      this.session.io.later(config.ackWaitMs, () => {
        if (this.flight.isWaiting(newest)) counters.deliveriesWrittenLate += this.flight.storeWaiting(true);
      });
    }
    if (!settled.length) return "ok";
    return Promise.all(settled).then(() => "ok" as const);
  }

  /** Messages sent unstored: those not acknowledged ACK_WAIT_MS after they were sent are written as in flight. */
  private writeIfUnacknowledged(packetIds: number[]): void {
    this.session.io.later(this.session.config.ackWaitMs, () => {
      counters.deliveriesWrittenLate += this.flight.storeUnacknowledged(true, packetIds);
    });
  }

  /**
   * Which budget a new message would exceed: MAX_QUEUED_BYTES (the message's bytes on top of those
   * held) or the MAX_QUEUED_MESSAGES safety net; undefined when it fits.
   */
  private queueFull(d: Delivery): QueueLimit | undefined {
    const { config } = this.session;
    if (this.flight.pendingCount() >= config.maxQueuedMessages) {
      return { limit: "MAX_QUEUED_MESSAGES", value: config.maxQueuedMessages };
    }
    // The stored messages' bytes, and those waiting unwritten for the window; unstored QoS 1 ones in
    // flight are at most the window, for ACK_WAIT_MS.
    const held = this.session.store.pendingBytes() + this.flight.waitingBytes();
    if (held + queuedMessageBytes(d) > config.maxQueuedBytes) {
      return { limit: "MAX_QUEUED_BYTES", value: config.maxQueuedBytes };
    }
    return undefined;
  }

  private reportDrop(reason: DropReason, full?: QueueLimit): void {
    const { io, meta } = this.session;
    io.report({ kind: "dropped", clientId: meta.clientId ?? "", reason, count: 1 });
    if (full) this.queueFullLog.record(io.now(), { clientId: meta.clientId, ...full });
  }

  /** Why publishPacket refused a delivery: its expiry passed, or it exceeds the client's maximum. */
  private undeliverableReason(d: Delivery): DropReason {
    const remaining = remainingExpiry(d.message.properties, d.message.receivedAt, this.session.io.now());
    return remaining !== undefined && remaining <= 0 ? "expired" : "too_large_for_client";
  }

  /** How many more QoS 1/2 messages may be in flight to the client now [MQTT-4.9.0-2]. */
  private windowRoom(): number {
    const window = Math.min(this.session.meta.clientReceiveMax ?? 65535, this.session.config.maxInflight);
    return window - this.flight.inflightCount();
  }

  /** Sends queued QoS 1/2 messages while the in-flight window allows [MQTT-4.9.0-2]. */
  pump(): void {
    const { meta, store } = this.session;
    const connId = meta.connId;
    if (!connId || !(store.hasQueued() || this.flight.hasWaiting())) return;
    let room = this.windowRoom();
    if (room <= 0) return;
    // Written messages never wait behind unwritten ones (deliver); should both be there, the
    // unwritten are written behind them rather than overtake them.
    if (store.hasQueued()) this.flight.storeWaiting(true);
    const packets: Packet[] = [];
    const unstored: number[] = [];
    while (room > 0 && this.flight.hasWaiting()) {
      const m = this.flight.takeWaiting()!;
      const packetId = this.nextPacketId();
      const packet = this.publishPacket(m.delivery, packetId, false);
      if (!packet) {
        m.settle(); // expired or too large for the client: never sendable
        this.reportDrop(this.undeliverableReason(m.delivery));
        continue;
      }
      this.flight.sentWaiting(m, packetId);
      unstored.push(packetId);
      packets.push(packet);
      room--;
    }
    if (unstored.length) this.writeIfUnacknowledged(unstored);
    while (room > 0 && store.hasQueued()) {
      const rows = store.outboundRows([OutState.QUEUED], room);
      if (!rows.length) break;
      for (const row of rows) {
        const packetId = this.nextPacketId();
        const packet = this.publishPacket(row.delivery, packetId, false);
        if (!packet) {
          store.discard(row.seq); // expired or too large for the client: never sendable
          this.reportDrop(this.undeliverableReason(row.delivery));
          continue;
        }
        this.flight.sentFromQueue(row.seq, packetId); // in flight from here: nextPacketId skips it
        packets.push(packet);
        room--;
      }
    }
    if (packets.length) this.session.send(connId, packets);
  }

  /** [MQTT-4.4.0-1] resends unacknowledged PUBLISH (with DUP) and PUBREL packets of a resumed session. */
  resendInflight(connId: string): void {
    const packets: Packet[] = [];
    for (const row of this.session.store.outboundRows([OutState.SENT, OutState.RELEASED])) {
      if (row.state === OutState.RELEASED) {
        packets.push(ackPacket("pubrel", row.packetId!));
      } else {
        // [MQTT-3.3.1-1] DUP is set on a re-delivery; the packet id stays the same
        const p = this.publishPacket(row.delivery, row.packetId!, true, true);
        if (p) packets.push(p);
      }
    }
    if (packets.length) this.session.send(connId, packets);
  }

  private nextPacketId(): number {
    let id = (this.lastPacketId ??= this.session.store.highestPacketId());
    do id = (id % 65535) + 1;
    while (this.flight.packetIdInFlight(id));
    this.lastPacketId = id;
    return id;
  }

  /** The PUBLISH for a delivery, or undefined when it must not be sent (expired, too large). */
  private publishPacket(
    d: Delivery,
    packetId: number | undefined,
    dup: boolean,
    ignoreExpiry = false,
  ): PublishPacket | undefined {
    const { version, meta } = this.session;
    const m = d.message;
    const packet: PublishPacket = {
      cmd: "publish",
      topic: m.topic,
      payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
      qos: d.qos,
      retain: d.retain,
      dup,
    };
    if (packetId !== undefined) packet.messageId = packetId;
    if (version === 5) {
      const props: PublishProperties = {};
      const p = m.properties;
      if (p) {
        if (p.payloadFormatIndicator !== undefined) props.payloadFormatIndicator = p.payloadFormatIndicator;
        if (p.contentType !== undefined) props.contentType = p.contentType;
        if (p.responseTopic !== undefined) props.responseTopic = p.responseTopic;
        if (p.correlationData) props.correlationData = Buffer.from(p.correlationData);
        if (p.userProperties) props.userProperties = p.userProperties;
      }
      // [MQTT-3.3.2-6] the expiry sent is the received value less the time spent waiting
      const remaining = remainingExpiry(p, m.receivedAt, this.session.io.now());
      if (remaining !== undefined) {
        if (remaining <= 0 && !ignoreExpiry) return undefined;
        props.messageExpiryInterval = Math.max(remaining, 1);
      }
      if (d.subscriptionIds?.length) props.subscriptionIdentifier = d.subscriptionIds;
      if (Object.keys(props).length) packet.properties = props;
    }
    const alias = this.outboundAlias(m.topic);
    if (alias) {
      packet.properties = { ...packet.properties, topicAlias: alias.value };
      if (!alias.isNew) packet.topic = ""; // the client maps the alias back to the topic
    }
    if (meta.clientMaxPacketSize !== undefined) {
      // [MQTT-3.1.2-24, 3.1.2-25] a PUBLISH larger than the client's Maximum Packet Size is discarded
      if (!encodeWithin(packet, version, meta.clientMaxPacketSize)) {
        if (alias?.isNew) this.aliases!.delete(m.topic);
        return undefined;
      }
    }
    if (alias?.isNew) this.session.store.putTopicAliasOut(m.topic, alias.value);
    return packet;
  }

  /**
   * Topic aliases to the client, within the Topic Alias Maximum it announced [MQTT-3.3.2-8]: the
   * first topics sent on a connection get aliases 1..max; later ones go with their full topic.
   */
  private outboundAlias(topic: string): { value: number; isNew: boolean } | undefined {
    const max = this.session.meta.clientTopicAliasMax ?? 0;
    if (this.session.version !== 5 || max === 0) return undefined;
    this.aliases ??= this.session.store.topicAliasesOut();
    const existing = this.aliases.get(topic);
    if (existing !== undefined) return { value: existing, isNew: false };
    if (this.aliases.size >= max) return undefined;
    const value = this.aliases.size + 1;
    this.aliases.set(topic, value);
    return { value, isNew: true };
  }

  // --- acknowledgements of our PUBLISHes (packetViolation saw to it that each has its packet id) ----

  handlePuback(connId: string, packet: PubackPacket): void {
    this.flight.pubackReceived(packet.messageId!);
    this.pumpAfterAck(connId);
  }

  handlePubrec(connId: string, packet: PubrecPacket): void {
    const packetId = packet.messageId!;
    const outcome = this.flight.pubrecReceived(packetId, packet.reasonCode);
    if (outcome === "refused") return this.pumpAfterAck(connId); // the client refused it: the flow ends here [MQTT-4.3.3]
    const v5Unknown = outcome === "unknown" && this.session.version === 5;
    const code = v5Unknown ? ReasonCode.PACKET_IDENTIFIER_NOT_FOUND : ReasonCode.SUCCESS;
    this.session.send(connId, [ackPacket("pubrel", packetId, code)]);
  }

  handlePubcomp(connId: string, packet: PubcompPacket): void {
    this.flight.pubcompReceived(packet.messageId!);
    this.pumpAfterAck(connId);
  }

  /**
   * An acknowledgement made room in the window. When the next packet waiting is another PUBACK or
   * PUBCOMP of the same connection, that one sends what waits, for both: a client that acknowledges
   * a whole window in one frame gets the next window in one frame, and the written queue is read once
   * for it, not once per acknowledgement. Otherwise it goes now, as it did, behind nothing else.
   */
  private pumpAfterAck(connId: string): void {
    if (this.session.windowAckFollows(connId)) return;
    this.pump();
    if (this.session.meta.queueLevel) this.checkQueueLevel();
  }

  // --- queue-depth reports ----------------------------------------------------------------

  /**
   * Reports the queue depth (messages waiting behind the in-flight window) to the registry when it
   * crosses a level (metrics: queue depths). A client keeping up never reaches the first level.
   */
  checkQueueLevel(): void {
    const { meta, store, io } = this.session;
    const level = queueLevel(store.queuedCount());
    if (level === (meta.queueLevel ?? 0)) return;
    meta.queueLevel = level || undefined;
    store.writeMeta(meta);
    io.report({ kind: "queue", clientId: meta.clientId ?? "", level });
  }

  /**
   * The session's queue is gone with its state (the session ended, or started afresh): a deep-queue
   * level it reported must not stay in the registry's gauge.
   */
  queueGone(): void {
    const { meta, io } = this.session;
    if (!meta.queueLevel) return;
    meta.queueLevel = undefined;
    io.report({ kind: "queue", clientId: meta.clientId ?? "", level: 0 });
  }
}
