/** The gateway's `publishMany` request to a shard (src/topics/shard-publish-request.ts). */
import { describe, expect, it } from "vitest";
import type { RoutedMessage } from "../../src/protocol/message";
import { decodePublishMany, encodePublishMany } from "../../src/topics/shard-publish-request";

const message = (topic: string, payload: number[], correlation?: number[]): RoutedMessage => ({
  id: `pub:${topic}`,
  origin: "pub",
  topic,
  payload: new Uint8Array(payload),
  qos: 1,
  retain: false,
  receivedAt: 1700000000000,
  ...(correlation && {
    properties: {
      correlationData: new Uint8Array(correlation),
      userProperties: [["k", "v"]] as [string, string][],
      contentType: "x",
    },
  }),
});

describe("publishMany as a request", () => {
  it("carries messages, their bytes and the call's order unchanged", () => {
    const messages = [message("a/b", [1, 2, 3], [9, 8]), message("c", []), message("d", [0, 255])];
    const order = { from: "gw-1", seq: 4, after: 2 };
    const decoded = decodePublishMany(encodePublishMany(messages, order));
    expect(decoded).toEqual({ messages, order });
  });

  it("refuses a body that is not a call, whatever its bytes", () => {
    const good = encodePublishMany([message("a", [1, 2, 3], [7])], { from: "x", seq: 0, after: 0 });
    const bad = [
      new Uint8Array(0),
      new Uint8Array([0, 0, 0, 9, 1]), // header longer than the body
      new Uint8Array([0, 0, 0, 1, 0x7b]), // "{": not JSON
      good.subarray(0, good.length - 1), // a payload byte short
      new Uint8Array([...good, 0]), // a byte too many
    ];
    for (const body of bad) expect(decodePublishMany(body)).toHaveProperty("error");
    const header = new TextEncoder().encode(JSON.stringify({ messages: [{ payloadBytes: -1, correlationBytes: 0 }] }));
    const negative = new Uint8Array([0, 0, 0, header.length, ...header]);
    expect(decodePublishMany(negative)).toHaveProperty("error");
  });
});
