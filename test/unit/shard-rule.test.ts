import { describe, expect, it } from "vitest";
import {
  allShards,
  childShards,
  fnv1a,
  growthProblem,
  holdsFilter,
  isGrownShard,
  parentShard,
  shardForTopic,
  shardIndexFromName,
  shardKey,
  shardName,
  shardsForFilter,
} from "../../src/topics/shard-rule";
import { configProblems } from "../../src/config-check";
import { ConfigError, loadConfig } from "../../src/config";
import { topicMatches } from "../../src/protocol/topic";

describe("shard rule", () => {
  it("hashes the first K levels", () => {
    expect(shardKey("devices/42/temp", 2)).toBe("devices/42");
    expect(shardKey("devices", 2)).toBe("devices");
    expect(shardKey("a/b", 2)).toBe("a/b");
    expect(shardForTopic("devices/42/temp", 8, 2)).toBe(shardForTopic("devices/42/humidity", 8, 2));
  });

  it("is a stable FNV-1a", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
  });

  it("puts a filter with literal first K levels in one shard, others in all", () => {
    expect(shardsForFilter("devices/42/#", 8, 2)).toEqual([shardForTopic("devices/42/x", 8, 2)]);
    expect(shardsForFilter("devices/+/temp", 8, 2)).toEqual(allShards(8));
    expect(shardsForFilter("#", 8, 2)).toEqual(allShards(8));
    expect(shardsForFilter("a/#", 8, 2)).toEqual(allShards(8));
    expect(shardsForFilter("a", 8, 2)).toEqual([shardForTopic("a", 8, 2)]);
  });

  it("places a shared subscription by the filter it shares", () => {
    expect(shardsForFilter("$share/g/devices/42/#", 8, 2)).toEqual([shardForTopic("devices/42/x", 8, 2)]);
    expect(shardsForFilter("$share/g/devices/+/t", 8, 2)).toEqual(allShards(8));
  });

  it("always finds a matching filter in the topic's own shard", () => {
    const topics = ["a", "a/b", "a/b/c", "x/y/z/w", "devices/1/t", "devices/2/t", "/", "/a", "$SYS/x/y"];
    const filters = [
      "#",
      "+",
      "a/#",
      "a/b/#",
      "a/+",
      "+/b",
      "a/b/c",
      "devices/+/t",
      "devices/1/#",
      "+/+/+",
      "/#",
      "$SYS/#",
    ];
    for (const n of [1, 3, 8]) {
      for (const k of [1, 2, 3]) {
        for (const topic of topics) {
          for (const filter of filters) {
            if (!topicMatches(filter, topic)) continue;
            expect(shardsForFilter(filter, n, k), `${filter} ~ ${topic} (N=${n}, K=${k})`).toContain(
              shardForTopic(topic, n, k),
            );
          }
        }
      }
    }
  });
});

describe("growing the shard count", () => {
  const topics = Array.from({ length: 2000 }, (_, i) => `devices/${i}/status`);

  it("moves every key of a new shard from its one parent, and no key between old shards", () => {
    for (const [previous, count] of [
      [8, 16],
      [8, 64],
      [16, 64],
      [1, 3],
    ] as const) {
      const moved = new Set<number>();
      for (const topic of topics) {
        const before = shardForTopic(topic, previous, 2);
        const after = shardForTopic(topic, count, 2);
        // A key stays put or goes to a shard the growth added, whose parent held it.
        if (after !== before) {
          expect(isGrownShard(after, previous), topic).toBe(true);
          expect(parentShard(after, previous), topic).toBe(before);
          moved.add(after);
        } else expect(isGrownShard(after, previous)).toBe(false);
      }
      // Every new shard got keys (2,000 topics spread over at most 64 shards).
      expect(moved.size).toBe(count - previous);
    }
  });

  it("lists each parent's children, and every new shard is a child of exactly one parent", () => {
    expect(childShards(3, 8, 16)).toEqual([11]);
    expect(childShards(3, 8, 32)).toEqual([11, 19, 27]);
    expect(childShards(3, 8, 8)).toEqual([]);
    const children = allShards(8).flatMap((p) => childShards(p, 8, 64));
    expect(children.sort((a, b) => a - b)).toEqual(allShards(64).slice(8));
    for (const child of children) expect(childShards(parentShard(child, 8), 8, 64)).toContain(child);
  });

  it("gives a filter to the shards that hold it under the new count", () => {
    // A wildcard key is in every shard, before and after.
    for (const index of allShards(16)) expect(holdsFilter("devices/+/status", index, 16, 2)).toBe(true);
    // A literal key in exactly its shard, shared or not.
    for (const filter of ["devices/7/#", "$share/g/devices/7/status"]) {
      const holders = allShards(16).filter((i) => holdsFilter(filter, i, 16, 2));
      expect(holders).toEqual([shardForTopic("devices/7/status", 16, 2)]);
    }
  });

  it("refuses a shrink and a growth by no whole multiple, in the configuration check", () => {
    expect(growthProblem(16, 8)).toBeUndefined();
    expect(growthProblem(8, 8)).toBeUndefined();
    expect(growthProblem(4, 8)).toMatch(/cannot be removed/);
    expect(growthProblem(12, 8)).toMatch(/multiple of SHARD_COUNT_PREVIOUS 8/);
    expect(loadConfig({ SHARD_COUNT: "16", SHARD_COUNT_PREVIOUS: "8" })).toMatchObject({
      shardCount: 16,
      shardCountPrevious: 8,
    });
    // Unset: no growth in progress, whatever the count.
    expect(loadConfig({ SHARD_COUNT: "12" }).shardCountPrevious).toBe(12);
    expect(() => loadConfig({ SHARD_COUNT: "12", SHARD_COUNT_PREVIOUS: "8" })).toThrow(ConfigError);
    expect(configProblems({ SHARD_COUNT: "4", SHARD_COUNT_PREVIOUS: "8" })).toEqual([
      {
        variable: "SHARD_COUNT_PREVIOUS",
        problem: "SHARD_COUNT 4 is below SHARD_COUNT_PREVIOUS 8: shards cannot be removed",
      },
    ]);
  });

  it("reads a shard's index back from its object name only", () => {
    expect(shardIndexFromName(shardName(13))).toBe(13);
    expect(shardIndexFromName(shardName(0))).toBe(0);
    for (const name of [undefined, "", "shard:", "shard:01", "shard:-1", "registry:3", "shard:1x"]) {
      expect(shardIndexFromName(name), String(name)).toBeUndefined();
    }
  });
});
