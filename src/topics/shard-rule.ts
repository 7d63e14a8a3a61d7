/**
 * The shard rule: a topic's shard is hash(first K levels) mod N. A publish goes to exactly one
 * shard. A filter whose first K levels are all literal lives in that one shard; a filter with a
 * wildcard within its first K levels is registered in every shard, so that every topic it can match
 * finds it in the topic's own shard.
 *
 * Growth (docs/SHARDS.md): the count may only grow by a whole multiple, from P to M = k x P. Then
 * hash mod M mod P = hash mod P, so every key a new shard j (j >= P) owns under M was owned by one
 * old shard, its parent j mod P: a new shard adopts only from its parent, and nothing else moves.
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

/** The index in a shard's Durable Object name (shardName), undefined when it is not one. */
export function shardIndexFromName(name: string | undefined): number | undefined {
  const match = /^shard:(0|[1-9][0-9]{0,5})$/.exec(name ?? "");
  return match ? Number(match[1]) : undefined;
}

/** Why SHARD_COUNT may not follow SHARD_COUNT_PREVIOUS (undefined: it may). Never a silent re-hash. */
export function growthProblem(count: number, previous: number): string | undefined {
  if (count < previous) {
    return `SHARD_COUNT ${count} is below SHARD_COUNT_PREVIOUS ${previous}: shards cannot be removed`;
  }
  if (count % previous !== 0) {
    return `SHARD_COUNT ${count} must be a multiple of SHARD_COUNT_PREVIOUS ${previous}`;
  }
  return undefined;
}

/** Whether shard `index` was added by the growth from `previous` shards (it adopts from its parent). */
export function isGrownShard(index: number, previous: number): boolean {
  return index >= previous;
}

/** The old shard whose keys shard `index` took over in the growth from `previous` shards. */
export function parentShard(index: number, previous: number): number {
  return index % previous;
}

/** The shards the growth from `previous` to `count` added under `parent`: parent + k x previous. */
export function childShards(parent: number, previous: number, count: number): number[] {
  const children: number[] = [];
  for (let child = parent + previous; child < count; child += previous) children.push(child);
  return children;
}

/** Whether shard `index` holds a filter's row under `count` shards (every shard does for a wildcard key). */
export function holdsFilter(filter: string, index: number, count: number, levels: number): boolean {
  return inEveryShard(filter, levels) || shardsForFilter(filter, count, levels)[0] === index;
}
