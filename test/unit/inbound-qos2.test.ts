/**
 * The QoS 2 flow from the client (src/session/inbound-qos2.ts) over an in-memory store: a message
 * is routed once until PUBREL, whatever copies of its PUBLISH arrive meanwhile.
 */
import { describe, expect, it } from "vitest";
import { InboundQos2 } from "../../src/session/inbound-qos2";
import { RELEASED_IDS_KEPT } from "../../src/session/store";
import { MemoryInboundQos2 } from "../../src/session/store/memory";

/** A routing the test settles when it chooses. */
function routing() {
  let resolve!: (matched: number) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<number>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const flush = () => new Promise((r) => setTimeout(r, 0));

function machine() {
  const store = new MemoryInboundQos2(); // the inq2 table in memory
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
    expect(store.inboundQos2(1)).toEqual({ msgId: "m1", routed: false });
    r.resolve(3);
    expect(await routed).toBe(3);
    await flush();
    expect(qos2.publishReceived(1)).toEqual({ kind: "routed" });
    expect(qos2.pubrelReceived(1)).toBe("released");
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
    store.clear(); // clean start: the store's QoS 2 state is gone
    store.putInboundQos2(1, "new", false);
    expect(qos2.publishReceived(1)).toEqual({ kind: "retry", msgId: "new" });
    r.resolve(1);
    await flush();
    expect(store.inboundQos2(1)).toEqual({ msgId: "new", routed: false });
  });

  it("a refused message completes its flow without routing", () => {
    const { qos2 } = machine();
    qos2.publishRefused(2);
    expect(qos2.publishReceived(2)).toEqual({ kind: "routed" });
    expect(qos2.pubrelReceived(2)).toBe("released");
  });

  it("a PUBREL for a packet id that never awaited one is unknown (PACKET_IDENTIFIER_NOT_FOUND)", () => {
    const { qos2 } = machine();
    expect(qos2.pubrelReceived(9)).toBe("unknown");
    expect(qos2.pubrelReceived(9)).toBe("unknown");
  });

  it("a PUBREL resent for a released id is a repeat [MQTT-4.3.3-11], and a PUBLISH with it is new [MQTT-4.3.3-12]", () => {
    const { qos2 } = machine();
    qos2.publishRefused(9);
    expect(qos2.pubrelReceived(9)).toBe("released");
    expect(qos2.pubrelReceived(9)).toBe("repeated");
    expect(qos2.awaitingRelease()).toBe(0);
    expect(qos2.publishReceived(9)).toEqual({ kind: "new" });
    qos2.publishRefused(9);
    expect(qos2.awaitingRelease()).toBe(1);
    expect(qos2.pubrelReceived(9)).toBe("released");
  });

  it(`keeps only the newest ${RELEASED_IDS_KEPT} released ids`, () => {
    const { qos2 } = machine();
    const ids = Array.from({ length: RELEASED_IDS_KEPT + 1 }, (_, i) => i + 1);
    for (const id of ids) {
      qos2.publishRefused(id);
      qos2.pubrelReceived(id);
    }
    expect(qos2.pubrelReceived(1)).toBe("unknown");
    expect(ids.slice(1).map((id) => qos2.pubrelReceived(id))).toEqual(ids.slice(1).map(() => "repeated"));
  });
});
