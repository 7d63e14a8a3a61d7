import { describe, expect, it } from "vitest";
import { allShards, fnv1a, shardForTopic, shardKey, shardsForFilter } from "../../src/topics/shard-rule";
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
