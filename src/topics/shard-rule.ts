/**
 * The shard rule: a topic's shard is hash(first K levels) mod N. A publish goes to exactly one
 * shard. A filter whose first K levels are all literal lives in that one shard; a filter with a
 * wildcard within its first K levels is registered in every shard, so that every topic it can match
 * finds it in the topic's own shard.
 */
import { parseSharedFilter } from "../protocol/topic";

/** FNV-1a over the UTF-16 code units of the key: stable across isolates and versions. */
export function fnv1a(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The first `levels` levels of a topic (or all of them when it has fewer). */
export function shardKey(topic: string, levels: number): string {
  let slashes = 0;
  for (let i = 0; i < topic.length; i++) {
    if (topic.charCodeAt(i) === 47 && ++slashes === levels) return topic.slice(0, i);
  }
  return topic;
}

/** The one shard that owns a topic name. */
export function shardForTopic(topic: string, shardCount: number, levels: number): number {
  return fnv1a(shardKey(topic, levels)) % shardCount;
}

/**
 * The shards a filter must be registered in: one when its first K levels are literal, else all.
 * A filter `a/b/#` with K=2 also matches topic `a/b`, whose key is the same `a/b`: one shard.
 */
export function shardsForFilter(filter: string, shardCount: number, levels: number): number[] {
  if (inEveryShard(filter, levels)) return allShards(shardCount);
  return [fnv1a(shardKey(parseSharedFilter(filter)?.filter ?? filter, levels)) % shardCount];
}

/** A filter with a wildcard within its first K levels is registered in every shard. */
export function inEveryShard(filter: string, levels: number): boolean {
  // A shared subscription follows the rule of the filter it shares: `$share/{group}/{filter}`.
  const key = shardKey(parseSharedFilter(filter)?.filter ?? filter, levels);
  return key.includes("+") || key.includes("#");
}

export function allShards(shardCount: number): number[] {
  return Array.from({ length: shardCount }, (_, i) => i);
}

/** The Durable Object name of shard i. */
export function shardName(index: number): string {
  return `shard:${index}`;
}
