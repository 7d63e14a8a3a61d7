/**
 * The QoS 1 and QoS 2 flows of messages to the client, as a state machine whose methods are the
 * protocol events. A message's state lives in the store (OutState: SENT, then for QoS 2 RELEASED,
 * then finished); a QoS 1 message sent under ACK_WAIT and not written yet lives here (`unstored`),
 * and so does one that waits, unwritten, for room in the in-flight window (`waiting`).
 *
 *   QoS 1: sent -> pubackReceived -> finished
 *   QoS 2: sent -> pubrecReceived -> RELEASED (PUBREL sent) -> pubcompReceived -> finished
 *          sent -> pubrecReceived with a failure code -> finished (the client refused it)
 *
 * An acknowledgement that does not fit the message's state changes nothing (the caller may still
 * answer it, as with a PUBREC for an unknown packet id).
 */
import type { Delivery } from "../protocol/message";
import { OutState, queuedMessageBytes, type SessionStore } from "./store";

/** The store methods the flows use (any SessionStore implementation has them). */
export type FlightStore = Pick<
  SessionStore,
  | "enqueue"
  | "markSent"
  | "findInflight"
  | "markReleased"
  | "finish"
  | "inflightCount"
  | "isPacketIdInFlight"
  | "nextSeq"
  | "pendingCount"
>;

/** A QoS 1 message in flight to the client and not written to the store (OutboundFlight.unstored). */
interface UnstoredMessage {
  delivery: Delivery;
  /** Its place in the outbound order, given out when it was sent. */
  seq: number;
  /** Settles the shard's `deliver` call for this message (acknowledged or written). */
  settle: () => void;
}

/**
 * Whether an unwritten message is written when its connection or session ends: when the session
 * keeps it (`keep`), and always for a shared subscription's. The session's end then hands that one
 * to another member of the group [MQTT-4.8.2] (Subscriptions.handOverShared reads the written rows),
 * as it would have if it had been written on arrival; dropped, it would be lost although its
 * publisher was acknowledged once it was settled here.
 */
function keptAtEnd(keep: boolean, m: UnstoredMessage): boolean {
  return keep || m.delivery.shareFilter !== undefined;
}

/** What a PUBREC did: "released" (a PUBREL is due), "refused" (the flow ended), "unknown" (no such QoS 2 flow). */
export type PubrecOutcome = "released" | "refused" | "unknown";

export class OutboundFlight {
  /**
   * QoS 1 messages sent to the live connection that are neither acknowledged nor written yet, by
   * packet id. Each has a shard waiting on its `deliver` call, so none is ever only here: if this
   * object dies, that call fails and the publisher is not acknowledged.
   */
  private readonly unstored = new Map<number, UnstoredMessage>();
  /**
   * QoS 1 messages for the live connection that arrived while the in-flight window was full, not
   * written, oldest first. Each has a shard waiting on its `deliver` call, as `unstored` does. A
   * paced `deliver` call brings what waited for it in one burst, so a burst larger than the window's
   * free room is the normal case for a hot subscriber: written, each would cost 3 rows.
   */
  private readonly waiting: UnstoredMessage[] = [];
  /** The bytes of `waiting`, kept as it changes: the byte budget asks for it per message of a batch. */
  private waitingBytesHeld = 0;

  constructor(private readonly store: FlightStore) {}

  /** A message went to the client under `packetId`, written as in flight. False: a duplicate, not to be sent. */
  sent(delivery: Delivery, packetId: number): boolean {
    return this.store.enqueue(delivery, OutState.SENT, packetId);
  }

  /** A queued message (its row `seq`) went to the client under `packetId`. */
  sentFromQueue(seq: number, packetId: number): void {
    this.store.markSent(seq, packetId);
  }

  /**
   * A QoS 1 message went to the client under `packetId` without being written: settles once the
   * client acknowledges it or it is written (storeUnacknowledged).
   */
  sentUnstored(delivery: Delivery, packetId: number): Promise<void> {
    return new Promise((settle) => this.unstored.set(packetId, { delivery, seq: this.store.nextSeq(), settle }));
  }

  /**
   * A QoS 1 message for the live connection that the window has no room for yet, not written: it
   * waits here (takeWaiting), in order; settles like one sent unstored, or when written (storeWaiting).
   */
  holdUnsent(delivery: Delivery): Promise<void> {
    this.waitingBytesHeld += heldMessageBytes(delivery);
    return new Promise((settle) => this.waiting.push({ delivery, seq: this.store.nextSeq(), settle }));
  }

  /** Whether QoS 1 messages wait, unwritten, for room in the window (anything newer goes behind them). */
  hasWaiting(): boolean {
    return this.waiting.length > 0;
  }

  /** Whether this message (from holdUnsent) still waits, unsent and unwritten. */
  isWaiting(delivery: Delivery): boolean {
    return this.waiting.some((m) => m.delivery === delivery);
  }

  /** The oldest waiting message, taken out of the wait: sent (sentWaiting) or dropped (settled) next. */
  takeWaiting(): UnstoredMessage | undefined {
    const message = this.waiting.shift();
    if (message) this.waitingBytesHeld -= heldMessageBytes(message.delivery);
    return message;
  }

  /** A message from takeWaiting went to the client under `packetId`: in flight, unstored, from now. */
  sentWaiting(message: UnstoredMessage, packetId: number): void {
    this.unstored.set(packetId, message);
  }

  /**
   * Every waiting message is written as queued (with its place in the order), or, without `keep`,
   * dropped with the session that held them (but a shared subscription's: keptAtEnd); either way its
   * `deliver` call settles.
   */
  storeWaiting(keep: boolean): number {
    let written = 0;
    this.waitingBytesHeld = 0;
    for (const m of this.waiting.splice(0)) {
      if (keptAtEnd(keep, m) && this.store.enqueue(m.delivery, OutState.QUEUED, null, m.seq)) written++;
      m.settle();
    }
    return written;
  }

  /** The bytes of the waiting messages, as the queue's byte budget counts them. */
  waitingBytes(): number {
    return this.waitingBytesHeld;
  }

  /** PUBACK: a QoS 1 message in flight under this packet id is done [MQTT-4.3.2-3 ends the flow here]. */
  pubackReceived(packetId: number): void {
    const held = this.unstored.get(packetId);
    if (held) {
      // Acknowledged before it was written: it never needs a row.
      this.unstored.delete(packetId);
      held.settle();
      return;
    }
    const row = this.store.findInflight(packetId, OutState.SENT);
    if (row && row.delivery.qos === 1) this.store.finish(row);
  }

  /**
   * PUBREC: a QoS 2 message is received; PUBREL is due ("released", also for a repeated PUBREC).
   * A failure code ends the flow here ("refused") [MQTT-4.3.3].
   */
  pubrecReceived(packetId: number, reasonCode = 0): PubrecOutcome {
    const row = this.store.findInflight(packetId, OutState.SENT);
    if (row && row.delivery.qos === 2) {
      if (reasonCode >= 0x80) {
        this.store.finish(row);
        return "refused";
      }
      this.store.markReleased(row.seq);
      return "released";
    }
    return this.store.findInflight(packetId, OutState.RELEASED) ? "released" : "unknown";
  }

  /** PUBCOMP: a released QoS 2 message is complete. */
  pubcompReceived(packetId: number): void {
    const row = this.store.findInflight(packetId, OutState.RELEASED);
    if (row) this.store.finish(row);
  }

  /**
   * Settles unstored QoS 1 messages (those of `packetIds`, or all, the waiting ones too): written as
   * in flight when `keep` (resent with DUP and the same packet id on resumption [MQTT-4.4.0-1]), the
   * waiting ones as queued, else dropped with the session that held them (but a shared
   * subscription's: keptAtEnd). Returns how many were written.
   */
  storeUnacknowledged(keep: boolean, packetIds?: Iterable<number>): number {
    let written = packetIds ? 0 : this.storeWaiting(keep);
    packetIds ??= [...this.unstored.keys()];
    for (const packetId of packetIds) {
      const m = this.unstored.get(packetId);
      if (!m) continue; // acknowledged meanwhile
      this.unstored.delete(packetId);
      if (keptAtEnd(keep, m) && this.store.enqueue(m.delivery, OutState.SENT, packetId, m.seq)) written++;
      m.settle();
    }
    return written;
  }

  /** QoS 1/2 messages in flight to the client: written ones and unstored ones. */
  inflightCount(): number {
    return this.store.inflightCount() + this.unstored.size;
  }

  /** QoS 1/2 messages this session holds for the client: queued, in flight, unstored, waiting. */
  pendingCount(): number {
    return this.store.pendingCount() + this.unstored.size + this.waiting.length;
  }

  /** Whether a message in flight to the client (written or unstored) uses this packet id. */
  packetIdInFlight(packetId: number): boolean {
    return this.unstored.has(packetId) || this.store.isPacketIdInFlight(packetId);
  }
}

/**
 * What a message held in memory takes against MAX_QUEUED_BYTES: its queuedMessageBytes, and the rest
 * of its payload's buffer, which for a client's message also holds its 3.1.1 PUBLISH's header and
 * topic (protocol/codec.ts payloadInPublish). A written message is counted without them.
 */
function heldMessageBytes(d: Delivery): number {
  const payload = d.message.payload;
  return queuedMessageBytes(d) + (payload.buffer.byteLength - payload.byteLength);
}
