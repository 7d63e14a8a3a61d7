/** TopicShard Durable Object: a thin shell over TopicShard (subscription index + retained store). */
import { applyLogLevel } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import { counters, countingSql, countObjectCall } from "../observability/counters";
import { sessionStub, type Env } from "../env";
import type { RoutedMessage, Subscription } from "../protocol/message";
import type { SessionObject } from "../session/session-object";
import { CALL_GAP_MS, CallSequencer, OrderedChannels, type CallOrder } from "../util/ordered-calls";
import { TopicShard, type ShardCounts, type ShardStats } from "./topic-shard";

/** One shard's part of the dashboard's refresh (src/http/overview.ts). */
export interface ShardOverview {
  stats: ShardStats;
  counts: ShardCounts;
  subscriptions: (Subscription & { clientId: string })[];
  retained: RoutedMessage[];
}

/** Sessions this shard keeps a numbered channel to; beyond this the least recently used is forgotten. */
const MAX_SESSION_CHANNELS = 10000;
/** Sessions whose calls to this shard are put in order; beyond this the least recently heard is forgotten. */
const MAX_ORDERED_CALLERS = 10000;

export class TopicShardObject extends DurableObject<Env> {
  private readonly shard: TopicShard;
  /** Deliveries to sessions, numbered so that each session handles this shard's in order. */
  private readonly sessions = new OrderedChannels<string, DurableObjectStub<SessionObject>>(
    (clientId) => sessionStub(this.env, clientId),
    () => crypto.randomUUID(),
    MAX_SESSION_CHANNELS,
  );
  /** Calls from each session, handled in the order the session made them. */
  private readonly fromSessions = new CallSequencer(MAX_ORDERED_CALLERS, CALL_GAP_MS, (ms, fn) => setTimeout(fn, ms));

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    this.shard = new TopicShard(
      countingSql(ctx.storage.sql),
      configFor(env),
      (clientId, batch, onlyIfOnline) =>
        this.sessions.call(clientId, (session, order) => session.deliver(batch, onlyIfOnline, order)),
      Date.now,
      undefined,
      // The shard's only alarm: its counters' write (observability/totals.ts). Billed as a row.
      (at) => {
        counters.metricsRowsWritten++;
        void ctx.storage.setAlarm(at);
      },
    );
  }

  /** Writes the metrics counters. Not counted as an invocation: that count would need writing again. */
  override async alarm(): Promise<void> {
    counters.shardInvocations++;
    this.countCall();
    this.shard.flushTotals();
  }

  /** Counts one invocation of this object (test counters, and the shard's own metrics). */
  private invoked(): void {
    counters.shardInvocations++;
    this.countCall();
    this.shard.countInvocation();
  }

  /** Counts one call into this shard by its name (`shard:<index>`), for the per-object rates. */
  private countCall(): void {
    countObjectCall("shard", this.ctx.id.name ?? this.ctx.id.toString());
  }

  // Calls from sessions carry their order (util/ordered-calls.ts); each runs in it.

  async subscribe(
    clientId: string,
    subs: Subscription[],
    retainedFor: string[],
    order?: CallOrder,
  ): Promise<RoutedMessage[][]> {
    this.invoked();
    return this.fromSessions.run(order, () => this.shard.subscribe(clientId, subs, retainedFor));
  }

  async unsubscribe(clientId: string, filters: string[], order?: CallOrder): Promise<void> {
    this.invoked();
    return this.fromSessions.run(order, () => this.shard.unsubscribe(clientId, filters));
  }

  /** Several messages from one session, in order; resolves with each one's match count. */
  async publishMany(messages: RoutedMessage[], order?: CallOrder): Promise<number[]> {
    this.invoked();
    return this.fromSessions.run(order, () => Promise.all(messages.map((m) => this.shard.publish(m))));
  }

  // --- admin API and metrics ---------------------------------------------------------------

  async stats(): Promise<ShardStats> {
    return this.shard.stats();
  }

  /**
   * Everything the dashboard shows from this shard in one call: its figures, its first `limit`
   * subscriptions, and (`retainedFilter` set: the shard may hold matches) its first `limit` matching
   * retained messages. Counted as an invocation, like every call that reaches the shard.
   */
  async overview(retainedFilter: string | undefined, limit: number): Promise<ShardOverview> {
    this.invoked();
    return {
      stats: this.shard.stats(),
      counts: this.shard.counts(),
      subscriptions: this.shard.listSubscriptions(undefined, undefined, limit),
      retained: retainedFilter === undefined ? [] : this.shard.retainedMatching(retainedFilter).slice(0, limit),
    };
  }

  async listRetained(filter: string, limit: number): Promise<RoutedMessage[]> {
    return this.shard.retainedMatching(filter).slice(0, limit);
  }

  async deleteRetained(filter: string): Promise<number> {
    return this.shard.deleteRetained(filter);
  }

  async listSubscriptions(
    within: string,
    clientId: string | undefined,
    limit: number,
  ): Promise<(Subscription & { clientId: string })[]> {
    return this.shard.listSubscriptions(within, clientId, limit);
  }

  /** A leaving shared-subscription member's unfinished message, for another member. */
  async redistribute(shareFilter: string, leaving: string, message: RoutedMessage, order?: CallOrder): Promise<void> {
    this.invoked();
    await this.fromSessions.run(order, () => this.shard.redistribute(shareFilter, leaving, message));
  }
}
