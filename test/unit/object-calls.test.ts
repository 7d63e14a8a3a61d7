// The per-object call counts behind the benchmark's hottest-object rates are bounded.
import { describe, expect, it } from "vitest";
import {
  callsByObjectSnapshot,
  countObjectCall,
  isolateId,
  MAX_COUNTED_OBJECTS,
} from "../../src/observability/counters";

describe("per-object call counts", () => {
  it("count each object's calls under its name", () => {
    countObjectCall("shard", "shard:3");
    countObjectCall("shard", "shard:3");
    countObjectCall("registry", "registry:0");
    const calls = callsByObjectSnapshot();
    expect(calls.shard["shard:3"]).toBe(2);
    expect(calls.registry["registry:0"]).toBe(1);
  });

  it("keep at most MAX_COUNTED_OBJECTS per class, forgetting the least recently called", () => {
    countObjectCall("session", "hot");
    for (let i = 0; i < MAX_COUNTED_OBJECTS; i++) {
      countObjectCall("session", `cold-${i}`);
      if (i % 100 === 0) countObjectCall("session", "hot"); // called all along: never the least recent
    }
    const calls = callsByObjectSnapshot().session;
    expect(Object.keys(calls)).toHaveLength(MAX_COUNTED_OBJECTS);
    expect(calls.hot).toBe(1 + Math.ceil(MAX_COUNTED_OBJECTS / 100));
    expect(calls["cold-0"]).toBeUndefined(); // the least recently called went first
    expect(calls[`cold-${MAX_COUNTED_OBJECTS - 1}`]).toBe(1);
  });
});

describe("the isolate's identity", () => {
  it("is the same for every reading of one isolate, so a reader can tell a restart", () => {
    const first = isolateId();
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    expect(isolateId()).toBe(first);
  });
});
