/**
 * The raw CONNECT check (src/protocol/connect-check.ts) on its own: it passes what well-behaved
 * clients send, and it answers every byte string with a verdict, never an exception.
 */
import fc from "fast-check";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { connectFault } from "../../src/protocol/connect-check";

const generate = (packet: Record<string, unknown>, version: 3 | 4 | 5) =>
  new Uint8Array(
    mqtt.generate({ cmd: "connect", protocolVersion: version, clean: true, keepalive: 30, ...packet } as mqtt.Packet, {
      protocolVersion: version,
    }),
  );

describe("raw CONNECT check", () => {
  it("passes CONNECTs as MQTT clients write them, v3, v4 and v5", () => {
    const will = { topic: "status/ü", payload: Buffer.from([0, 1, 2]), qos: 2, retain: true };
    expect(
      connectFault(generate({ clientId: "a", protocolId: "MQIsdp", username: "u", password: Buffer.from("p") }, 3)),
    ).toBeUndefined();
    expect(
      connectFault(generate({ clientId: "dev-1", will, username: "ü", password: Buffer.from("p") }, 4)),
    ).toBeUndefined();
    const props = {
      sessionExpiryInterval: 60,
      receiveMaximum: 1,
      maximumPacketSize: 100,
      topicAliasMaximum: 0,
      requestResponseInformation: true,
      requestProblemInformation: false,
      userProperties: { a: ["1", "2"], b: "3" },
      authenticationMethod: "SCRAM-SHA-256",
      authenticationData: Buffer.from("n,,n=u,r=x"),
    };
    const willProps = {
      willDelayInterval: 5,
      payloadFormatIndicator: true,
      messageExpiryInterval: 9,
      contentType: "text/plain",
      responseTopic: "r",
      correlationData: Buffer.from("c"),
      userProperties: { k: "v" },
    };
    expect(
      connectFault(generate({ clientId: "v5", properties: props, will: { ...will, properties: willProps } }, 5)),
    ).toBeUndefined();
  });

  it("answers any bytes, and any corruption of a valid CONNECT, without throwing", () => {
    const valid = generate(
      {
        clientId: "dev",
        will: { topic: "t", payload: Buffer.from("x"), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
        properties: { receiveMaximum: 5 },
        username: "u",
        password: Buffer.from("p"),
      },
      5,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const fault = connectFault(bytes);
        expect(fault === undefined || [0x81, 0x82].includes(fault.reasonCode)).toBe(true);
      }),
      { seed: 11, numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), (at, value) => {
        const bytes = valid.slice();
        bytes[at] = value;
        const fault = connectFault(bytes);
        expect(fault === undefined || [0x81, 0x82].includes(fault.reasonCode)).toBe(true);
      }),
      { seed: 11, numRuns: 2000 },
    );
  });
});
