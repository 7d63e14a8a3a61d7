/**
 * The shard router: every message the broker routes reaches the one TopicShard that owns its topic
 * (shard-rule.ts), grouped so that each shard gets its messages in one `publishMany` call, in the
 * order they were given. Used by sessions (ShardRouter: messages from packets that arrived together,
 * over numbered calls), and by the HTTP API, the library and the `$SYS` publisher (routeToShards:
 * one request's messages at once).
 */
import { topicShardStub, type Env } from "../env";
import type { RoutedMessage } from "../protocol/message";
import { Batcher } from "../util/batcher";
import { shardForTopic } from "./shard-rule";

/** The shard layout the rule needs (BrokerConfig has it). */
export interface ShardLayout {
  shardCount: number;
  shardLevels: number;
}

/** Sends one shard its messages in one call; resolves with each message's match count, in order. */
export type PublishMany = (index: number, messages: RoutedMessage[]) => Promise<number[]>;

/** What became of one message: how many sessions and groups it matched, or why it was not routed. */
export type RouteResult = { id: string; matched: number } | { id: string; error: string };

/** The subscribers one routed message matched; throws the error it failed with. */
export function matchedOrThrow([result]: RouteResult[]): number {
  if (result === undefined) throw new Error("not routed");
  if ("error" in result) throw new Error(result.error);
  return result.matched;
}

/** A message as its publisher gave it, before the broker gives it an id and a time. */
export type MessageDraft = Omit<RoutedMessage, "id" | "origin" | "receivedAt">;

/**
 * A message the broker publishes on no client's behalf (no origin, so No Local never applies): the
 * id prefix names the source (`http`, `hook`, `sys`).
 */
export function brokerMessage(source: string, draft: MessageDraft, now: number): RoutedMessage {
  return { ...draft, id: `${source}:${crypto.randomUUID()}`, origin: "", receivedAt: now };
}

/** The positions of the messages each shard owns, in their order. */
export function groupByShard(messages: readonly { topic: string }[], layout: ShardLayout): Map<number, number[]> {
  const byShard = new Map<number, number[]>();
  messages.forEach((m, i) => {
    const index = shardForTopic(m.topic, layout.shardCount, layout.shardLevels);
    let positions = byShard.get(index);
    if (!positions) byShard.set(index, (positions = []));
    positions.push(i);
  });
  return byShard;
}

/**
 * Routes messages now: one call per shard, all shards at once. Each message gets its own result; a
 * shard whose call failed gives each of its messages that error (the others are unaffected).
 */
export async function routeToShards(
  messages: RoutedMessage[],
  layout: ShardLayout,
  publishMany: PublishMany,
): Promise<RouteResult[]> {
  const results: RouteResult[] = messages.map((m) => ({ id: m.id, error: "not routed" }));
  await Promise.all(
    [...groupByShard(messages, layout)].map(async ([index, positions]) => {
      try {
        const matched = await publishMany(
          index,
          positions.map((i) => messages[i]!), // positions index messages (groupByShard)
        );
        // publishMany answers one count per message it was given.
        positions.forEach((i, k) => (results[i] = { id: messages[i]!.id, matched: matched[k]! }));
      } catch (err) {
        positions.forEach((i) => (results[i] = { id: messages[i]!.id, error: String((err as Error).message ?? err) }));
      }
    }),
  );
  return results;
}

/**
 * Routes messages from the Worker (HTTP API, library, `$SYS` publisher): plain calls, not numbered
 * (util/ordered-calls.ts): the Worker keeps no channel between requests, and a request's messages
 * to one shard go in one call.
 */
export function routeFromWorker(env: Env, layout: ShardLayout, messages: RoutedMessage[]): Promise<RouteResult[]> {
  return routeToShards(messages, layout, (index, batch) => topicShardStub(env, index).publishMany(batch));
}

/** Most messages routed to one shard in one call. */
export const MAX_ROUTE_BATCH = 128;

/**
 * Routes messages as they come (a session's): those routed before the flush, which `later`
 * schedules after the events already waiting, go to each shard in one call, in the order routed.
 * The calls' own order is `publishMany`'s to keep: the session's numbers them per shard
 * (util/ordered-calls.ts), so a later call's messages never overtake an earlier call's.
 */
export class ShardRouter {
  private readonly batches: Batcher<number, RoutedMessage, number>;

  constructor(
    private readonly layout: ShardLayout,
    publishMany: PublishMany,
    later: (fn: () => void) => void,
    maxBatch = MAX_ROUTE_BATCH,
  ) {
    this.batches = new Batcher(publishMany, later, maxBatch);
  }

  /** The shard that owns a topic. */
  shardFor(topic: string): number {
    return shardForTopic(topic, this.layout.shardCount, this.layout.shardLevels);
  }

  /** Resolves with the message's match count once its shard has it (durable for every QoS>0 match). */
  route(message: RoutedMessage): Promise<number> {
    return this.batches.add(this.shardFor(message.topic), message);
  }
}
