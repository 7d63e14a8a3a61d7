import { describe, expect, it } from "vitest";
import { parsePacket } from "../../src/protocol/codec";
import { packetViolation } from "../../src/protocol/validate";

/** Parses real bytes, then applies our checks: the bytes are what a client would send. */
function check(bytes: number[], version: 4 | 5 = 4) {
  const parsed = parsePacket(new Uint8Array(bytes), version);
  if ("error" in parsed) return { parseError: parsed.error };
  return packetViolation(parsed.packet as never);
}

describe("packet checks beyond the codec", () => {
  it("refuses packet identifier 0 [MQTT-2.2.1-3] [MQTT311-2.3.1-1]", () => {
    expect(check([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])).toMatchObject({ reasonCode: 0x81 });
    expect(check([0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00])).toMatchObject({ reasonCode: 0x81 });
    expect(check([0x40, 0x02, 0x00, 0x00])).toMatchObject({ reasonCode: 0x81 });
  });
  it("refuses DUP on QoS 0 [MQTT-3.3.1-2] [MQTT311-3.3.1-2]", () => {
    expect(check([0x38, 0x03, 0x00, 0x01, 0x61])).toMatchObject({ reasonCode: 0x81 });
  });
  it("refuses SUBSCRIBE and UNSUBSCRIBE without filters [MQTT-3.8.3-2, 3.10.3-2] [MQTT311-3.8.3-3, 3.10.3-2]", () => {
    expect(check([0x82, 0x02, 0x00, 0x01])).toMatchObject({ reasonCode: 0x82 });
    expect(check([0xa2, 0x02, 0x00, 0x01])).toMatchObject({ reasonCode: 0x82 });
  });
  it("passes well-formed packets", () => {
    expect(check([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])).toBeUndefined();
    expect(check([0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x01])).toBeUndefined();
    expect(check([0x30, 0x03, 0x00, 0x01, 0x61])).toBeUndefined();
  });
  it("leaves reserved flag bits and QoS 3 to the codec [MQTT-2.1.3-1, 3.3.1-4] [MQTT311-2.2.2-2, 3.3.1-4]", () => {
    expect(check([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])).toHaveProperty("parseError");
    expect(check([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])).toHaveProperty("parseError");
  });
});
