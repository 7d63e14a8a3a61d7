import { describe, expect, it } from "vitest";
import { presentedToken, sameSecret } from "../../src/http/api-auth";
import { MAX_BATCH_MESSAGES, parsePublishBody } from "../../src/http/publish-request";
import { DEFAULT_CONFIG } from "../../src/config";
import { at } from "../support/elements";

describe("HTTP publish request", () => {
  it("defaults qos 0, retain false, empty payload", () => {
    const r = parsePublishBody({ topic: "a/b" }, DEFAULT_CONFIG, false);
    expect(r).toEqual({
      ok: true,
      messages: [{ topic: "a/b", payload: new Uint8Array(), qos: 0, retain: false, properties: undefined }],
    });
  });
  it("decodes base64 payload and correlation data", () => {
    const r = parsePublishBody(
      { topic: "t", payload: "AAH/", encoding: "base64", properties: { correlationData: "YWJj" } },
      DEFAULT_CONFIG,
      false,
    );
    if (!r.ok) throw new Error(r.error);
    expect([...at(r.messages, 0).payload]).toEqual([0, 1, 255]);
    expect(new TextDecoder().decode(at(r.messages, 0).properties!.correlationData)).toBe("abc");
  });
  it("names the failing message of a batch and bounds the batch", () => {
    const bad = parsePublishBody([{ topic: "ok" }, { topic: "x/#" }], DEFAULT_CONFIG, true);
    expect(bad).toMatchObject({
      ok: false,
      status: 400,
      error: expect.stringMatching(/^messages\[1\]\.topic: wildcard/),
    });
    const big = parsePublishBody(
      Array.from({ length: MAX_BATCH_MESSAGES + 1 }, () => ({ topic: "t" })),
      DEFAULT_CONFIG,
      true,
    );
    expect(big).toMatchObject({ ok: false, status: 413 });
  });
  it("refuses a message larger than the maximum packet size with 413", () => {
    const r = parsePublishBody(
      { topic: "t", payload: "x".repeat(DEFAULT_CONFIG.maxPacketSize) },
      DEFAULT_CONFIG,
      false,
    );
    expect(r).toMatchObject({ ok: false, status: 413 });
  });
});

describe("API tokens", () => {
  it("reads bearer and basic credentials", () => {
    expect(presentedToken("Bearer abc")).toBe("abc");
    expect(presentedToken(`Basic ${btoa("admin:s3cret:x")}`)).toBe("s3cret:x");
    expect(presentedToken("Digest abc")).toBeUndefined();
    expect(presentedToken(undefined)).toBeUndefined();
  });
  it("compares secrets", async () => {
    expect(await sameSecret("a", "a")).toBe(true);
    expect(await sameSecret("a", "ab")).toBe(false);
  });
});
