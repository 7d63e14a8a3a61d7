/**
 * The QoS 2 flow from the client (src/session/inbound-qos2.ts) over an in-memory store: a message
 * is routed once until PUBREL, whatever copies of its PUBLISH arrive meanwhile.
 */
import { describe, expect, it } from "vitest";
import { InboundQos2, type Qos2Store } from "../../src/session/inbound-qos2";

/** The inq2 table in memory. */
class MemoryQos2Store implements Qos2Store {
  rows = new Map<number, { msgId: string; routed: boolean }>();
  inboundQos2(packetId: number) {
    const row = this.rows.get(packetId);
    return row && { ...row };
  }
  inboundQos2Count(): number {
    return this.rows.size;
  }
  putInboundQos2(packetId: number, msgId: string, routed: boolean): void {
    this.rows.set(packetId, { msgId, routed });
  }
  markInboundQos2Routed(packetId: number, msgId: string): void {
    const row = this.rows.get(packetId);
    if (row?.msgId === msgId) row.routed = true;
  }
  deleteInboundQos2(packetId: number): boolean {
    return this.rows.delete(packetId);
  }
}

/** A routing the test settles when it chooses. */
function routing() {
  let resolve!: (matched: number) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<number>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const flush = () => new Promise((r) => setTimeout(r, 0));

function machine() {
  const store = new MemoryQos2Store();
  return { store, qos2: new InboundQos2(store) };
}

describe("InboundQos2", () => {
  it("new -> accepted (routing) -> routed -> pubrelReceived ends the flow", async () => {
    const { store, qos2 } = machine();
    expect(qos2.publishReceived(1)).toEqual({ kind: "new" });
    const r = routing();
    let routes = 0;
    const routed = qos2.publishAccepted(1, "m1", () => (routes++, r.promise));
    expect(routes).toBe(1);
    expect(qos2.awaitingRelease()).toBe(1);
    expect(store.rows.get(1)).toEqual({ msgId: "m1", routed: false });
    r.resolve(3);
    expect(await routed).toBe(3);
    await flush();
    expect(qos2.publishReceived(1)).toEqual({ kind: "routed" });
    expect(qos2.pubrelReceived(1)).toBe(true);
    expect(qos2.awaitingRelease()).toBe(0);
    expect(qos2.publishReceived(1)).toEqual({ kind: "new" });
  });

  it("a copy arriving while the first is routed waits for that routing, and is not routed again", async () => {
    const { qos2 } = machine();
    const r = routing();
    const routed = qos2.publishAccepted(1, "m1", () => r.promise);
    const copy = qos2.publishReceived(1);
    expect(copy.kind).toBe("routing");
    expect(copy.kind === "routing" && copy.routed).toBe(routed);
    r.resolve(1);
    await flush();
    expect(qos2.publishReceived(1)).toEqual({ kind: "routed" });
  });

  it("a copy after a failed routing is routed again under the same message id", async () => {
    const { qos2 } = machine();
    const r = routing();
    const routed = qos2.publishAccepted(1, "m1", () => r.promise);
    r.reject(new Error("shard unavailable"));
    await routed.catch(() => undefined);
    await flush();
    expect(qos2.publishReceived(1)).toEqual({ kind: "retry", msgId: "m1" });
  });

  it("a copy after a restart during routing (row kept, routing forgotten) is routed again under its id", () => {
    const { store } = machine();
    store.putInboundQos2(4, "m4", false);
    const restarted = new InboundQos2(store);
    expect(restarted.publishReceived(4)).toEqual({ kind: "retry", msgId: "m4" });
  });

  it("a routing that ends after a clean start does not mark the new session's use of the packet id", async () => {
    const { store, qos2 } = machine();
    const r = routing();
    qos2.publishAccepted(1, "old", () => r.promise);
    store.rows.clear(); // clean start: the store's QoS 2 state is gone
    store.putInboundQos2(1, "new", false);
    expect(qos2.publishReceived(1)).toEqual({ kind: "retry", msgId: "new" });
    r.resolve(1);
    await flush();
    expect(store.rows.get(1)).toEqual({ msgId: "new", routed: false });
  });

  it("a refused message completes its flow without routing", () => {
    const { qos2 } = machine();
    qos2.publishRefused(2);
    expect(qos2.publishReceived(2)).toEqual({ kind: "routed" });
    expect(qos2.pubrelReceived(2)).toBe(true);
  });

  it("a PUBREL for a packet id that awaits none is reported (PACKET_IDENTIFIER_NOT_FOUND), twice too", () => {
    const { qos2 } = machine();
    expect(qos2.pubrelReceived(9)).toBe(false);
    qos2.publishRefused(9);
    expect(qos2.pubrelReceived(9)).toBe(true);
    expect(qos2.pubrelReceived(9)).toBe(false);
  });
});
