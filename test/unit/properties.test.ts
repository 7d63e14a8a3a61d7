import { describe, expect, it } from "vitest";
import { parsePacket, encodePacket } from "../../src/protocol/codec";
import {
  messagePropertiesFrom,
  propertiesFromJson,
  propertiesToJson,
  remainingExpiry,
} from "../../src/protocol/properties";

describe("PUBLISH properties", () => {
  it("come out of the codec as plain, structured-cloneable objects", () => {
    const bytes = encodePacket(
      {
        cmd: "publish",
        topic: "t",
        payload: Buffer.from("x"),
        qos: 0,
        dup: false,
        retain: false,
        properties: {
          userProperties: { a: "1", b: ["x", "y"] },
          correlationData: Buffer.from([1, 2]),
          contentType: "c",
        },
      } as never,
      5,
    );
    const parsed = parsePacket(bytes, 5);
    if ("error" in parsed) throw new Error(parsed.error);
    const props = messagePropertiesFrom((parsed.packet as any).properties)!;
    expect(structuredClone(props)).toEqual(props); // what DO RPC does with it
    expect(props.userProperties).toEqual([
      ["a", "1"],
      ["b", "x"],
      ["b", "y"],
    ]);
    expect(propertiesFromJson(propertiesToJson(props))).toEqual(props);
  });

  it("count message expiry down in whole seconds", () => {
    expect(remainingExpiry({ messageExpiryInterval: 10 }, 1000, 4500)).toBe(7);
    expect(remainingExpiry(undefined, 0, 1)).toBeUndefined();
  });
});
