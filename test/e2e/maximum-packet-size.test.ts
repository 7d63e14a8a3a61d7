/**
 * Every packet the server builds, at the gateway and in the session, fits the Maximum Packet Size
 * the client announced in CONNECT: what does not fit goes without its Reason String (and a CONNACK
 * without the properties that only restate their defaults); what still does not fit is not sent.
 * Raw v5 clients over real WebSockets; each packet's size is read from its Remaining Length.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, rawClient, REFUSAL_CLOSE_MS } from "../support/clients";
import { uid } from "../support/ids";
import { at } from "../support/elements";
import type { Packet } from "mqtt-packet";
import type { RawClient } from "../support/raw-client";

afterEach(closeAll);

/**
 * A packet's size on the wire: fixed header byte, Remaining Length bytes, and what they count
 * (mqtt-packet's parser sets `length`; without it the size is NaN, as undefined arithmetic was).
 */
const wireSize = ({ length = NaN }: Pick<Packet, "length">): number =>
  1 + (length < 128 ? 1 : length < 16384 ? 2 : length < 2097152 ? 3 : 4) + length;

/** Every packet the client received, with its size, for the failure message. */
const sizes = (raw: RawClient) => raw.received.map((p) => `${p.cmd} ${wireSize(p)}`);

function expectAllWithin(raw: RawClient, max: number): void {
  expect(raw.received.length).toBeGreaterThan(0);
  expect(
    sizes(raw).filter((_, i) => wireSize(at(raw.received, i)) > max),
    `packets larger than ${max}`,
  ).toEqual([]);
}

describe("the client's Maximum Packet Size", () => {
  it("the gateway's keep-alive DISCONNECT goes without its Reason String when that would exceed it [MQTT-3.1.2-24, 3.14.2-3]", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid("mps-ka"), keepalive: 1, properties: { maximumPacketSize: 24 } });
    expect(connack.reasonCode).toBe(0);
    // silence: after 1.5 s the gateway closes with 0x8D (its Reason String alone would make it 25 bytes)
    const disconnect = await raw.next("disconnect", 8000);
    expect(disconnect.reasonCode).toBe(0x8d);
    await raw.waitClosed();
    expectAllWithin(raw, 24);
  });

  it("a client with room gets the keep-alive DISCONNECT's Reason String [MQTT-3.14.2-3]", async () => {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("mps-ka-room"), keepalive: 1, properties: { maximumPacketSize: 25 } });
    const disconnect = await raw.next("disconnect", 8000);
    expect(disconnect.reasonCode).toBe(0x8d);
    expect(disconnect.properties?.reasonString).toBe("keep alive timeout");
    expectAllWithin(raw, 25);
  });

  it("a refusal CONNACK carries a Reason String, left out when it would exceed the limit [MQTT-3.2.2-19, 3.1.2-24]", async () => {
    const refused = async (maximumPacketSize: number) => {
      const raw = await rawClient(5);
      const connack = await raw.connect({
        clientId: uid("mps-refused"),
        properties: { maximumPacketSize, authenticationMethod: "NO-SUCH-METHOD" },
      });
      expect(connack.reasonCode).toBe(0x8c); // [MQTT-4.12.0-1] Bad authentication method
      await raw.waitClosed(REFUSAL_CLOSE_MS);
      expectAllWithin(raw, maximumPacketSize);
      return connack;
    };
    expect((await refused(1000)).properties?.reasonString).toBe("authentication method not supported");
    expect((await refused(8)).properties?.reasonString).toBeUndefined();
  });

  it("the session's CONNACK with Server Keep Alive fits by leaving out properties that restate their defaults [MQTT-3.1.2-24]", async () => {
    const raw = await rawClient(5);
    // Keep Alive 0: the CONNACK adds Server Keep Alive [MQTT-3.2.2-21] (27 bytes in full)
    const connack = await raw.connect({
      clientId: uid("mps-ska"),
      keepalive: 0,
      properties: { maximumPacketSize: 24 },
    });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties!.serverKeepAlive).toBeGreaterThan(0);
    expect(connack.properties!.maximumPacketSize).toBeGreaterThan(0);
    expect(connack.properties!.receiveMaximum).toBeGreaterThan(0);
    // the session still answers within the limit
    expect((await raw.subscribe(`${uid("mps")}/t`, 1)).granted).toEqual([1]);
    expectAllWithin(raw, 24);
  });

  it("a CONNACK that cannot fit at all is not sent: the connection closes [MQTT-3.1.2-24]", async () => {
    const raw = await rawClient(5);
    // an empty client id: the CONNACK must carry the Assigned Client Identifier, 40+ bytes
    raw.send({
      cmd: "connect",
      protocolVersion: 5,
      protocolId: "MQTT",
      clean: true,
      keepalive: 60,
      clientId: "",
      properties: { maximumPacketSize: 24 },
    });
    await raw.waitClosed();
    expect(sizes(raw)).toEqual([]);
  });

  it("a session DISCONNECT goes without its Reason String when that would exceed the limit [MQTT-3.14.2-3]", async () => {
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid("mps-sd"), properties: { maximumPacketSize: 24 } });
    // Topic Alias 0 is invalid: DISCONNECT 0x94 with a 40-byte Reason String in full
    raw.send({ cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 0, properties: { topicAlias: 0 } });
    expect((await raw.next("disconnect")).reasonCode).toBe(0x94);
    await raw.waitClosed();
    expectAllWithin(raw, 24);
  });
});
