/** The gateway's router for ROUTE_AT_EDGE (src/gateway/edge-route.ts): the hand-back to the session. */
import { describe, expect, it } from "vitest";
import { EdgeRouter } from "../../src/gateway/edge-route";
import type { RoutedMessage } from "../../src/protocol/message";

const message = (topic: string): RoutedMessage => ({
  topic,
  payload: new Uint8Array([1]),
  qos: 1,
  retain: false,
  id: topic,
  origin: "pub",
  receivedAt: 0,
});

/** A router whose shard calls are answered by the test, and what it did, in order. */
function router() {
  const answers: ((matched: number) => void)[] = [];
  const events: string[] = [];
  const edge = new EdgeRouter(5, {
    route: () => new Promise<number>((resolve) => answers.push(resolve)),
    send: (packet) => events.push(`puback ${(packet[2]! << 8) | packet[3]!}`),
    fail: () => events.push("fail"),
    handedBack: () => events.push("handed back"),
    later: (ms, fn) => setTimeout(fn, ms),
    now: () => Date.now(),
  });
  return { edge, answers, events };
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
};

describe("EdgeRouter: routing handed back to the session", () => {
  it("says so only once every message handed over before it is routed and its PUBACK sent [MQTT-4.6.0-2]", async () => {
    const { edge, answers, events } = router();
    edge.handle({ kind: "route", message: message("a"), packetId: 1, ackDelayMs: 0 });
    edge.handle({ kind: "route", message: message("b"), packetId: 0, ackDelayMs: 0 }); // QoS 0: no PUBACK
    edge.handle({ kind: "handed-back" });
    await turns();
    expect(events).toEqual([]); // both still with their shard
    answers[0]!(1);
    await turns();
    expect(events).toEqual(["puback 1"]); // the QoS 0 message is still being routed
    answers[1]!(0);
    await turns();
    expect(events).toEqual(["puback 1", "handed back"]);
  });

  it("waits for a PUBACK the publish rate delays, not only for the shard's answer", async () => {
    const { edge, answers, events } = router();
    edge.handle({ kind: "route", message: message("a"), packetId: 7, ackDelayMs: 40 });
    edge.handle({ kind: "handed-back" });
    answers[0]!(1);
    await turns();
    expect(events).toEqual([]); // routed, its PUBACK not due yet
    await new Promise<void>((resolve) => setTimeout(resolve, 60));
    await turns();
    expect(events).toEqual(["puback 7", "handed back"]);
  });

  it("never says so after a routing failure: the connection ends instead", async () => {
    const failing = new EdgeRouter(5, {
      route: () => Promise.reject(new Error("shard gone")),
      send: () => undefined,
      fail: () => events.push("fail"),
      handedBack: () => events.push("handed back"),
      later: (ms, fn) => setTimeout(fn, ms),
      now: () => Date.now(),
    });
    const events: string[] = [];
    failing.handle({ kind: "route", message: message("a"), packetId: 1, ackDelayMs: 0 });
    failing.handle({ kind: "handed-back" });
    await turns();
    expect(events).toEqual(["fail"]);
  });
});

describe("EdgeRouter: what it tells the session for Receive Maximum", () => {
  it("counts every QoS 1 order it received (routed or a refusal) apart from the PUBACKs it sent; QoS 0 in neither", async () => {
    const { edge, answers } = router();
    edge.handle({ kind: "route", message: message("a"), packetId: 1, ackDelayMs: 0 });
    edge.handle({ kind: "route", message: message("b"), packetId: 0, ackDelayMs: 0 }); // QoS 0
    edge.handle({ kind: "ack", packet: new Uint8Array([0x40, 0x03, 0x00, 0x02, 0x87]) });
    await turns();
    expect({ received: edge.received, acked: edge.acked }).toEqual({ received: 2, acked: 0 });
    answers[0]!(1);
    answers[1]!(0);
    await turns();
    expect({ received: edge.received, acked: edge.acked }).toEqual({ received: 2, acked: 2 });
  });
});
