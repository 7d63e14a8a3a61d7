/** The internal protocol between gateway and Session object (src/protocol/internal-frame.ts): both sides. */
import { describe, expect, it } from "vitest";
import {
  decodeConnectHeaders,
  decodeEdgeAcked,
  decodeEdgeOrder,
  decodeFrame,
  encodeConnectHeaders,
  encodeEdgeAcked,
  encodeEdgeHandBack,
  encodeEdgeOrder,
  encodeFrame,
  isEdgeHandBack,
  isEdgeOrder,
  SessionHeader,
  type SessionConnect,
} from "../../src/protocol/internal-frame";

const upgrade = (connect: SessionConnect) => new Headers(encodeConnectHeaders(connect));

describe("internal upgrade headers", () => {
  it("round-trip every connection fact, client strings included", () => {
    const connect: SessionConnect = {
      clientId: "dev/1 %zz \u00e9\u{1F600}\n",
      assignedClientId: true,
      serverKeepAlive: 30,
      version: 5,
      identity: { username: 'al\u00efce "x"', roles: ["ops"], grants: { publish: ["a/#"], subscribe: [] } },
      authResponse: { method: "SCRAM-SHA-256", data: btoa("v=proof") },
      remoteAddress: "2001:db8::1",
      routeAtEdge: true,
    };
    expect(decodeConnectHeaders(upgrade(connect))).toEqual(connect);
  });

  it("round-trip a minimal connection: the absent facts stay absent", () => {
    const connect: SessionConnect = { clientId: "c", assignedClientId: false, version: 4, identity: {} };
    const headers = upgrade(connect);
    const names = [SessionHeader.CLIENT_ID, SessionHeader.IDENTITY, SessionHeader.VERSION];
    expect([...headers.keys()].sort()).toEqual(names);
    const decoded = decodeConnectHeaders(headers);
    expect(decoded).toEqual(connect);
    expect(decoded.serverKeepAlive).toBeUndefined();
    expect(decoded.authResponse).toBeUndefined();
    expect(decoded.remoteAddress).toBeUndefined();
  });

  it("decode a header the gateway would not write to an error naming it", () => {
    const bad = (name: string, value: string) => {
      const headers = upgrade({ clientId: "c", assignedClientId: false, version: 5, identity: {} });
      headers.set(name, value);
      return () => decodeConnectHeaders(headers);
    };
    expect(bad(SessionHeader.IDENTITY, "%7B")).toThrow(`header ${SessionHeader.IDENTITY} is not JSON`);
    const authResponse = SessionHeader.AUTH_RESPONSE;
    expect(bad(authResponse, "%E0%A4%A")).toThrow(`header ${authResponse} is not URI-encoded`);
    expect(bad(SessionHeader.CLIENT_ID, "%")).toThrow(`header ${SessionHeader.CLIENT_ID} is not URI-encoded`);
  });
});

describe("internal frames", () => {
  it("round-trip the sequence number and the packets of a frame", () => {
    const pingreq = new Uint8Array([0xc0, 0x00]);
    const puback = new Uint8Array([0x40, 0x02, 0x00, 0x07]);
    const frame = encodeFrame(0x01020304, [puback, pingreq]);
    expect(decodeFrame(frame)).toEqual({ seq: 0x01020304, packets: [puback, pingreq] });
    expect(decodeFrame(encodeFrame(0xffffffff, [pingreq]))).toEqual({ seq: 0xffffffff, packets: [pingreq] });
  });

  it("decode short or cut input to an error, never to packets", () => {
    expect(decodeFrame(new Uint8Array([]))).toEqual({ error: "frame of 0 bytes: too short for a number and a packet" });
    const numberOnly = new Uint8Array([0, 0, 0, 1]);
    expect(decodeFrame(numberOnly)).toEqual({ error: "frame of 4 bytes: too short for a number and a packet" });
    const cut = new Uint8Array([0, 0, 0, 1, 0x40, 0x02, 0x00]);
    expect(decodeFrame(cut)).toEqual({ error: "frame 1 does not hold whole packets" });
    const badLength = new Uint8Array([0, 0, 0, 1, 0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(decodeFrame(badLength)).toEqual({ error: "frame 1 does not hold whole packets" });
    const trailing = encodeFrame(2, [new Uint8Array([0xc0, 0x00]), new Uint8Array([0x40, 0x02, 0x00])]);
    expect(decodeFrame(trailing)).toEqual({ error: "frame 2 does not hold whole packets" });
  });
});

describe("edge orders (session -> gateway) and the gateway's PUBACK count (gateway -> session)", () => {
  const message = {
    id: "c:1",
    origin: "c",
    topic: "a/ü/b",
    payload: new Uint8Array([0, 1, 2, 255]),
    qos: 1 as const,
    retain: true,
    receivedAt: 1700000000000,
    properties: {
      contentType: "text/plain",
      correlationData: new Uint8Array([9, 8, 7]),
      userProperties: [
        ["k", "v1"],
        ["k", "v2"],
      ] as [string, string][],
      messageExpiryInterval: 60,
    },
  };

  it("round-trip a message to route, binary parts and User Properties in order", () => {
    const bytes = encodeEdgeOrder({ kind: "route", message, packetId: 65535, ackDelayMs: 12.2 });
    expect(isEdgeOrder(bytes)).toBe(true);
    expect(decodeEdgeOrder(bytes)).toEqual({ kind: "route", message, packetId: 65535, ackDelayMs: 13 });
    const plain = { ...message, properties: undefined, payload: new Uint8Array(0) };
    const decoded = decodeEdgeOrder(encodeEdgeOrder({ kind: "route", message: plain, packetId: 0, ackDelayMs: 0 }));
    expect(decoded).toEqual({
      kind: "route",
      message: { ...plain, properties: undefined },
      packetId: 0,
      ackDelayMs: 0,
    });
  });

  it("round-trip an acknowledgement, and are never an MQTT packet (type 0 is reserved)", () => {
    const puback = new Uint8Array([0x40, 0x03, 0x00, 0x02, 0x87]);
    expect(decodeEdgeOrder(encodeEdgeOrder({ kind: "ack", packet: puback }))).toEqual({ kind: "ack", packet: puback });
    expect(isEdgeOrder(puback)).toBe(false);
    expect(decodeEdgeOrder(new Uint8Array([0, 1, 0]))).toEqual({ error: "unknown or short edge order" });
  });

  it("carry the gateway's counts as one type-0 packet of a frame", () => {
    const note = encodeEdgeAcked({ received: 0x01020304, acked: 0x0a0b0c0d });
    expect(decodeFrame(encodeFrame(0, [note]))).toEqual({ seq: 0, packets: [note] });
    expect(decodeEdgeAcked(note)).toEqual({ received: 0x01020304, acked: 0x0a0b0c0d });
    expect(decodeEdgeAcked(new Uint8Array([0x40, 0x02, 0, 1]))).toBeUndefined();
  });
});

describe("the hand-back of routing (EDGE_ROUTE_CALL_BUDGET)", () => {
  it("is a type-0 packet the session tells apart from the acknowledged count, and its answer an edge order", () => {
    const handBack = encodeEdgeHandBack();
    expect(isEdgeHandBack(handBack)).toBe(true);
    expect(decodeEdgeAcked(handBack)).toBeUndefined();
    expect(isEdgeHandBack(encodeEdgeAcked({ received: 0, acked: 0 }))).toBe(false);
    const answer = encodeEdgeOrder({ kind: "handed-back" });
    expect(isEdgeOrder(answer)).toBe(true);
    expect(decodeEdgeOrder(answer)).toEqual({ kind: "handed-back" });
  });
});
