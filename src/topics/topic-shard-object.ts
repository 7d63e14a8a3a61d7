/** TopicShard Durable Object: a thin shell over TopicShard (subscription index + retained store). */
import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import { counters, countingSql } from "../observability/counters";
import type { Env } from "../env";
import type { RoutedMessage, Subscription } from "../protocol/message";
import type { SessionObject } from "../session/session-object";
import { TopicShard, type ShardStats } from "./topic-shard";

/** Session stubs kept per shard; beyond this many the cache starts over (stubs are cheap to make). */
const MAX_CACHED_STUBS = 10000;

export class TopicShardObject extends DurableObject<Env> {
  private readonly shard: TopicShard;
  private readonly stubs = new Map<string, DurableObjectStub<SessionObject>>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.shard = new TopicShard(
      countingSql(ctx.storage.sql),
      configFor(env),
      (clientId, batch, onlyIfOnline) => this.sessionStub(clientId).deliver(batch, onlyIfOnline),
      Date.now,
    );
  }

  /** One stub per session, so deliveries to it keep their order. */
  private sessionStub(clientId: string): DurableObjectStub<SessionObject> {
    let stub = this.stubs.get(clientId);
    if (!stub) {
      if (this.stubs.size >= MAX_CACHED_STUBS) this.stubs.clear();
      stub = this.env.SESSION.get(this.env.SESSION.idFromName(clientId));
      this.stubs.set(clientId, stub);
    }
    return stub;
  }

  async subscribe(clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]> {
    counters.shardInvocations++;
    this.shard.countInvocation();
    return this.shard.subscribe(clientId, subs, retainedFor);
  }

  async unsubscribe(clientId: string, filters: string[]): Promise<void> {
    counters.shardInvocations++;
    this.shard.countInvocation();
    this.shard.unsubscribe(clientId, filters);
  }

  async publish(message: RoutedMessage): Promise<number> {
    counters.shardInvocations++;
    this.shard.countInvocation();
    return this.shard.publish(message);
  }

  /** Several messages from one session, in order; resolves with each one's match count. */
  async publishMany(messages: RoutedMessage[]): Promise<number[]> {
    counters.shardInvocations++;
    this.shard.countInvocation();
    return Promise.all(messages.map((m) => this.shard.publish(m)));
  }

  // --- admin API and metrics ---------------------------------------------------------------

  async stats(): Promise<ShardStats> {
    return this.shard.stats();
  }

  async listRetained(filter: string, limit: number): Promise<RoutedMessage[]> {
    return this.shard.retainedMatching(filter).slice(0, limit);
  }

  async deleteRetained(filter: string): Promise<number> {
    return this.shard.deleteRetained(filter);
  }

  async listSubscriptions(within: string, clientId: string | undefined, limit: number): Promise<(Subscription & { clientId: string })[]> {
    return this.shard.listSubscriptions(within, clientId, limit);
  }

  /** A leaving shared-subscription member's unfinished message, for another member. */
  async redistribute(shareFilter: string, leaving: string, message: RoutedMessage): Promise<void> {
    counters.shardInvocations++;
    this.shard.countInvocation();
    await this.shard.redistribute(shareFilter, leaving, message);
  }
}
