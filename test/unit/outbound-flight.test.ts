/**
 * The QoS 1/2 flows to the client (src/session/outbound-flight.ts) over an in-memory store: each
 * protocol event in its state, and the events that do not fit the state.
 */
import { describe, expect, it } from "vitest";
import { payloadInPublish } from "../../src/protocol/codec";
import type { Delivery } from "../../src/protocol/message";
import { OutboundFlight, type FlightStore } from "../../src/session/outbound-flight";
import { OutState, type OutboundRow } from "../../src/session/store";

/** The store methods OutboundFlight uses, in memory: rows by seq, a finished QoS 2 row kept as DONE. */
class MemoryFlightStore implements FlightStore {
  rows = new Map<number, OutboundRow>();
  private lastSeq = 0;
  nextSeq(): number {
    return ++this.lastSeq;
  }
  enqueue(d: Delivery, state: number, packetId: number | null = null, seq = this.nextSeq()): boolean {
    if (d.qos === 2 && [...this.rows.values()].some((r) => r.msgId === d.message.id)) return false;
    this.rows.set(seq, { seq, msgId: d.message.id, state, packetId, delivery: d });
    return true;
  }
  markSent(seq: number, packetId: number): void {
    Object.assign(this.rows.get(seq)!, { state: OutState.SENT, packetId });
  }
  findInflight(packetId: number, state: number): OutboundRow | undefined {
    const row = [...this.rows.values()].find((r) => r.packetId === packetId && r.state === state);
    return row && { ...row };
  }
  markReleased(seq: number): void {
    this.rows.get(seq)!.state = OutState.RELEASED;
  }
  finish(row: OutboundRow): void {
    if (row.delivery.qos === 2) Object.assign(this.rows.get(row.seq)!, { state: OutState.DONE, packetId: null });
    else this.rows.delete(row.seq);
  }
  private inflight(): OutboundRow[] {
    return [...this.rows.values()].filter((r) => r.state === OutState.SENT || r.state === OutState.RELEASED);
  }
  inflightCount(): number {
    return this.inflight().length;
  }
  isPacketIdInFlight(packetId: number): boolean {
    return this.inflight().some((r) => r.packetId === packetId);
  }
  pendingCount(): number {
    return [...this.rows.values()].filter((r) => r.state !== OutState.DONE).length;
  }
  /** The state of the row with this message id (undefined: no row). */
  stateOf(msgId: string): number | undefined {
    return [...this.rows.values()].find((r) => r.msgId === msgId)?.state;
  }
}

const delivery = (id: string, qos: 1 | 2): Delivery => ({
  message: { id, origin: "o", topic: "t", payload: new Uint8Array([1]), qos, retain: false, receivedAt: 1 },
  qos,
  retain: false,
});

function newFlight() {
  const store = new MemoryFlightStore();
  return { store, flight: new OutboundFlight(store) };
}

describe("OutboundFlight: QoS 1", () => {
  it("sent -> pubackReceived finishes the message", () => {
    const { store, flight } = newFlight();
    expect(flight.sent(delivery("a", 1), 7)).toBe(true);
    expect(flight.inflightCount()).toBe(1);
    expect(flight.packetIdInFlight(7)).toBe(true);
    flight.pubackReceived(7);
    expect(store.stateOf("a")).toBeUndefined();
    expect(flight.inflightCount()).toBe(0);
    expect(flight.packetIdInFlight(7)).toBe(false);
  });

  it("a queued message sent under a packet id is in flight until its PUBACK", () => {
    const { store, flight } = newFlight();
    store.enqueue(delivery("a", 1), OutState.QUEUED);
    flight.sentFromQueue(1, 3);
    expect(store.stateOf("a")).toBe(OutState.SENT);
    flight.pubackReceived(3);
    expect(store.stateOf("a")).toBeUndefined();
  });

  it("an unstored message settles on its PUBACK and is never written", async () => {
    const { store, flight } = newFlight();
    const settled = flight.sentUnstored(delivery("a", 1), 5);
    expect(flight.inflightCount()).toBe(1);
    expect(flight.pendingCount()).toBe(1);
    expect(flight.packetIdInFlight(5)).toBe(true);
    flight.pubackReceived(5);
    await settled;
    expect(store.rows.size).toBe(0);
    expect(flight.inflightCount()).toBe(0);
  });

  it("an unstored message is written in flight, in its place, when kept; dropped when not", async () => {
    const { store, flight } = newFlight();
    const kept = flight.sentUnstored(delivery("a", 1), 5);
    const dropped = flight.sentUnstored(delivery("b", 1), 6);
    flight.storeUnacknowledged(true, [5]);
    await kept;
    expect(store.rows.get(1)).toMatchObject({ msgId: "a", state: OutState.SENT, packetId: 5 });
    flight.storeUnacknowledged(false);
    await dropped;
    expect(store.stateOf("b")).toBeUndefined();
    flight.pubackReceived(5); // the PUBACK of the written one finishes it
    expect(store.rows.size).toBe(0);
  });

  it("a message waiting for the window is held unwritten, sent in order, and settles on its PUBACK", async () => {
    const { store, flight } = newFlight();
    const a = flight.holdUnsent(delivery("a", 1));
    flight.holdUnsent(delivery("b", 1));
    expect(flight.hasWaiting()).toBe(true);
    expect(flight.pendingCount()).toBe(2);
    expect(flight.inflightCount()).toBe(0); // not sent yet: takes no room in the window
    const first = flight.takeWaiting()!;
    expect(first.delivery.message.id).toBe("a");
    flight.sentWaiting(first, 7);
    expect(flight.packetIdInFlight(7)).toBe(true);
    flight.pubackReceived(7);
    await a;
    expect(store.rows.size).toBe(0);
    expect(flight.takeWaiting()!.delivery.message.id).toBe("b");
    expect(flight.hasWaiting()).toBe(false);
  });

  it("waiting messages are written as queued, in their place, when kept; dropped when not", async () => {
    const { store, flight } = newFlight();
    const sent = flight.sentUnstored(delivery("a", 1), 5); // seq 1
    const waiting = flight.holdUnsent(delivery("b", 1)); // seq 2
    expect(flight.storeUnacknowledged(true)).toBe(2); // all: the waiting one too
    await Promise.all([sent, waiting]);
    expect(store.rows.get(1)).toMatchObject({ msgId: "a", state: OutState.SENT, packetId: 5 });
    expect(store.rows.get(2)).toMatchObject({ msgId: "b", state: OutState.QUEUED });
    const dropped = flight.holdUnsent(delivery("c", 1));
    expect(flight.storeWaiting(false)).toBe(0);
    await dropped;
    expect(store.stateOf("c")).toBeUndefined();
    expect(flight.hasWaiting()).toBe(false);
  });

  it("counts the waiting messages' bytes as they wait, leave and are written", () => {
    const { flight } = newFlight();
    expect(flight.waitingBytes()).toBe(0);
    void flight.holdUnsent(delivery("a", 1));
    const one = flight.waitingBytes();
    expect(one).toBeGreaterThan(0);
    void flight.holdUnsent(delivery("b", 1));
    expect(flight.waitingBytes()).toBe(2 * one);
    flight.takeWaiting();
    expect(flight.waitingBytes()).toBe(one);
    flight.storeWaiting(true);
    expect(flight.waitingBytes()).toBe(0);
  });

  it("counts the whole buffer a waiting message's payload holds (a client's: its PUBLISH too)", () => {
    const { flight } = newFlight();
    const topic = "x".repeat(1000);
    const plain = delivery("a", 1);
    plain.message.topic = topic;
    void flight.holdUnsent(plain);
    const alone = flight.waitingBytes();
    flight.takeWaiting();
    const inPacket = delivery("b", 1);
    inPacket.message.topic = topic;
    inPacket.message.payload = payloadInPublish(topic, new Uint8Array([1]));
    void flight.holdUnsent(inPacket);
    expect(flight.waitingBytes() - alone).toBe(inPacket.message.payload.buffer.byteLength - 1); // header + topic
    flight.takeWaiting();
    expect(flight.waitingBytes()).toBe(0);
  });

  it("ignores a PUBACK for an unknown packet id, and a PUBACK for a QoS 2 message", () => {
    const { store, flight } = newFlight();
    flight.pubackReceived(9);
    flight.sent(delivery("q2", 2), 4);
    flight.pubackReceived(4);
    expect(store.stateOf("q2")).toBe(OutState.SENT);
  });

  it("ignores a PUBREC and a PUBCOMP for a QoS 1 message (PUBREC: unknown)", () => {
    const { store, flight } = newFlight();
    flight.sent(delivery("a", 1), 2);
    expect(flight.pubrecReceived(2)).toBe("unknown");
    flight.pubcompReceived(2);
    expect(store.stateOf("a")).toBe(OutState.SENT);
  });
});

describe("OutboundFlight: QoS 2", () => {
  it("sent -> pubrecReceived -> released -> pubcompReceived -> done", () => {
    const { store, flight } = newFlight();
    flight.sent(delivery("a", 2), 1);
    expect(flight.pubrecReceived(1, 0)).toBe("released");
    expect(store.stateOf("a")).toBe(OutState.RELEASED);
    expect(flight.inflightCount()).toBe(1);
    flight.pubcompReceived(1);
    expect(store.stateOf("a")).toBe(OutState.DONE);
    expect(flight.inflightCount()).toBe(0);
  });

  it("a PUBREC with a failure code (0x80 and up) ends the flow: refused, no PUBREL", () => {
    const { store, flight } = newFlight();
    flight.sent(delivery("a", 2), 1);
    flight.sent(delivery("b", 2), 2);
    expect(flight.pubrecReceived(1, 0x80)).toBe("refused");
    expect(store.stateOf("a")).toBe(OutState.DONE);
    expect(flight.pubrecReceived(2, 0x10)).toBe("released"); // No matching subscribers is a success
  });

  it("a repeated PUBREC is answered again (released), a PUBREC for an unknown id is unknown", () => {
    const { store, flight } = newFlight();
    flight.sent(delivery("a", 2), 1);
    flight.pubrecReceived(1);
    expect(flight.pubrecReceived(1)).toBe("released");
    expect(store.stateOf("a")).toBe(OutState.RELEASED);
    expect(flight.pubrecReceived(99)).toBe("unknown");
  });

  it("ignores a PUBCOMP before the PUBREC", () => {
    const { store, flight } = newFlight();
    flight.sent(delivery("a", 2), 1);
    flight.pubcompReceived(1);
    expect(store.stateOf("a")).toBe(OutState.SENT);
  });

  it("a duplicate QoS 2 message is not sent again", () => {
    const { flight } = newFlight();
    expect(flight.sent(delivery("a", 2), 1)).toBe(true);
    expect(flight.sent(delivery("a", 2), 2)).toBe(false);
  });
});
