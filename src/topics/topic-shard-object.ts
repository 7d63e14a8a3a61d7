/** TopicShard Durable Object: a thin shell over TopicShard (subscription index + retained store). */
import { applyLogLevel, logEvent } from "../observability/log";
import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import { counters, countingSql, countObjectCall } from "../observability/counters";
import { bridgeStub, sessionStub, topicShardIndex, topicShardStub, type Env } from "../env";
import type { Delivery, DeliveryReply, RoutedMessage, Subscription } from "../protocol/message";
import { bridgeNameOf } from "../bridge/bridge-config";
import { CALL_GAP_MS, CallSequencer, OrderedChannels, type CallOrder } from "../util/ordered-calls";
import { TopicShard, type ShardCounts, type ShardStats } from "./topic-shard";
import { decodePublishMany, PUBLISH_MANY_PATH } from "./shard-publish-request";
import { MOVED_TABLES, ShardGrowth, ShardLayoutError, type AdoptionPage, type MovedTable } from "./shard-growth";

/** One shard's part of the dashboard's refresh (src/http/overview.ts). */
export interface ShardOverview {
  stats: ShardStats;
  counts: ShardCounts;
  subscriptions: (Subscription & { clientId: string })[];
  retained: RoutedMessage[];
}

/** What a shard delivers to: a client's Session object, or a Bridge object (its subscriber id `$bridge:<name>`). */
interface Subscriber {
  deliver(batch: Delivery[], onlyIfOnline: boolean, order: CallOrder): Promise<DeliveryReply>;
}

/** Sessions this shard keeps a numbered channel to; beyond this the least recently used is forgotten. */
const MAX_SESSION_CHANNELS = 10000;
/** Sessions whose calls to this shard are put in order; beyond this the least recently heard is forgotten. */
const MAX_ORDERED_CALLERS = 10000;

export class TopicShardObject extends DurableObject<Env> {
  private readonly shard: TopicShard;
  /** Deliveries to sessions, numbered so that each session handles this shard's in order. */
  private readonly sessions = new OrderedChannels<string, Subscriber>(
    (clientId) => {
      const bridge = bridgeNameOf(clientId);
      return bridge === undefined ? sessionStub(this.env, clientId) : bridgeStub(this.env, bridge);
    },
    () => crypto.randomUUID(),
    MAX_SESSION_CHANNELS,
  );
  /** Calls from each session, handled in the order the session made them. */
  private readonly fromSessions = new CallSequencer(MAX_ORDERED_CALLERS, CALL_GAP_MS, (ms, fn) => setTimeout(fn, ms));
  /** This shard's part in a growth of SHARD_COUNT (shard-growth.ts); undefined when it cannot serve. */
  private readonly growth: ShardGrowth | undefined;
  /** Why this shard refuses every call (a layout it cannot serve under), logged once. */
  private readonly layoutError: ShardLayoutError | undefined;
  private layoutLogged = false;
  /** While a new shard adopts its keys: every call waits for it, then runs in the order it came. */
  private adopting: Promise<void> | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    applyLogLevel(env.LOG_LEVEL);
    const config = configFor(env);
    const index = topicShardIndex(env, ctx.id, config.shardCount);
    try {
      // A shard beyond SHARD_COUNT (it was shrunk) holds keys nobody routes to: it serves nothing.
      if (index === undefined)
        throw new ShardLayoutError(`topic shard ${ctx.id.toString()} is not one of SHARD_COUNT ${config.shardCount}`);
      this.growth = new ShardGrowth(countingSql(ctx.storage.sql), index, config);
    } catch (err) {
      if (!(err instanceof ShardLayoutError)) throw err;
      this.layoutError = err; // logged when a call is refused (ready)
    }
    this.shard = new TopicShard(
      countingSql(ctx.storage.sql),
      configFor(env),
      (clientId, batch, onlyIfOnline) =>
        this.sessions.call(clientId, (session, order) => session.deliver(batch, onlyIfOnline, order)),
      Date.now,
      undefined,
      // The counters' write (observability/totals.ts), on a timer of the object's lifetime: an alarm
      // would be billed as a row to set and a request to run, every FLUSH_AFTER_MS while it counts. A
      // timer whose write was already made (asked for at once, or by an old alarm) finds another due
      // time, or none, and writes nothing: the next write stays FLUSH_AFTER_MS after its first count.
      (at) =>
        void setTimeout(
          () => {
            if (this.shard.totalsDueAt === at) this.shard.flushTotals();
          },
          Math.max(0, at - Date.now()),
        ),
      this.growth,
    );
    this.askChildrenToAdopt();
  }

  /**
   * Waits until the shard may serve: a new shard's adoption (retried by the next call if it failed),
   * or throws why it never may. Calls that waited resume in the order they arrived.
   */
  private async ready(): Promise<void> {
    if (this.layoutError) {
      if (!this.layoutLogged) logEvent("error", "shard.layout_refused", { problem: this.layoutError.message });
      this.layoutLogged = true;
      throw this.layoutError;
    }
    if (this.growth?.mustAdopt) await (this.adopting ??= this.adoptFromParent(this.growth));
  }

  /** A new shard takes its keys from its parent, page by page, then lets the parent delete them. */
  private async adoptFromParent(growth: ShardGrowth): Promise<void> {
    const parent = topicShardStub(this.env, growth.parent);
    try {
      growth.beginAdoption();
      let rows = 0;
      for (const table of MOVED_TABLES) {
        let after: string | null = null;
        do {
          const page: AdoptionPage = await parent.adoptionPage(table, growth.index, after);
          growth.importRows(table, page.rows);
          rows += page.rows.length;
          after = page.next;
        } while (after !== null);
      }
      growth.adopted();
      this.shard.reload();
      logEvent("info", "shard.adopted", { shard: growth.index, parent: growth.parent, rows });
    } catch (err) {
      logEvent("warn", "shard.adoption_failed", { shard: growth.index, error: String(err) });
      throw err;
    } finally {
      this.adopting = undefined; // failed: the next call starts again from scratch
    }
    // The parent deletes only what this shard now holds durably; if this fails, the parent's next
    // wake asks again (askChildrenToAdopt), and until then it serves none of it.
    parent.releaseMoved(growth.index).catch((err: unknown) => {
      logEvent("warn", "shard.release_failed", { shard: growth.index, error: String(err) });
    });
  }

  /** A parent wakes its children that have not taken their keys, so that a growth finishes unasked. */
  private askChildrenToAdopt(): void {
    for (const child of this.growth?.pendingChildren() ?? []) {
      topicShardStub(this.env, child)
        .adopt()
        .catch((err: unknown) => logEvent("warn", "shard.adoption_failed", { shard: child, error: String(err) }));
    }
  }

  // --- growth of SHARD_COUNT (shard-growth.ts) -----------------------------------------------

  /** A parent asks: take your keys now (and tell me again if you had, but I never heard). */
  async adopt(): Promise<void> {
    await this.ready();
    const growth = this.growth!; // ready() has thrown when there is none
    if (!growth.grown) return;
    await topicShardStub(this.env, growth.parent).releaseMoved(growth.index);
  }

  /** A child's next page of the rows it now owns. */
  async adoptionPage(table: MovedTable, child: number, after: string | null): Promise<AdoptionPage> {
    await this.ready();
    return this.growth!.page(table, child, after);
  }

  /** A child holds its keys durably: delete them here. */
  async releaseMoved(child: number): Promise<void> {
    await this.ready();
    const growth = this.growth!;
    if (!growth.pendingChildren().includes(child)) return;
    growth.release(child);
    this.shard.reload();
    if (growth.pendingChildren().length === 0) logEvent("info", "shard.growth_finished", { shard: growth.index });
  }

  /**
   * An alarm an earlier version set for its counters' write (they now go on a timer): writes them. Not
   * counted as an invocation: that count would need writing again.
   */
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
    await this.ready();
    return this.fromSessions.run(order, () => this.shard.subscribe(clientId, subs, retainedFor));
  }

  async unsubscribe(clientId: string, filters: string[], order?: CallOrder): Promise<void> {
    this.invoked();
    await this.ready();
    return this.fromSessions.run(order, () => this.shard.unsubscribe(clientId, filters));
  }

  /**
   * `publishMany` from the gateway (ROUTE_AT_EDGE), as a request it can cancel at its deadline
   * (shard-publish-request.ts). A body that is not a call is answered 400 and routes nothing.
   */
  override async fetch(request: Request): Promise<Response> {
    if (request.method !== "POST" || new URL(request.url).pathname !== PUBLISH_MANY_PATH) {
      return new Response("not found", { status: 404 });
    }
    const call = decodePublishMany(new Uint8Array(await request.arrayBuffer()));
    if ("error" in call) return new Response(call.error, { status: 400 });
    try {
      return Response.json(await this.publishMany(call.messages, call.order));
    } catch (err) {
      return new Response(err instanceof Error ? err.message : String(err), { status: 503 });
    }
  }

  /** Several messages from one session, in order; resolves with each one's match count. */
  async publishMany(messages: RoutedMessage[], order?: CallOrder): Promise<number[]> {
    this.invoked();
    await this.ready();
    // A caller on another SHARD_COUNT (a gradual deployment): refused, never stored where nobody looks.
    const stray = messages.find((m) => !this.growth!.ownsTopic(m.topic));
    if (stray) throw new Error(`shard ${this.growth!.index} does not own ${stray.topic} under this SHARD_COUNT`);
    return this.fromSessions.run(order, () => Promise.all(messages.map((m) => this.shard.publish(m))));
  }

  // --- admin API and metrics ---------------------------------------------------------------

  async stats(): Promise<ShardStats> {
    await this.ready();
    return this.shard.stats();
  }

  /**
   * Everything the dashboard shows from this shard in one call: its figures, its first `limit`
   * subscriptions, and (`retainedFilter` set: the shard may hold matches) its first `limit` matching
   * retained messages. Counted as an invocation, like every call that reaches the shard.
   */
  async overview(retainedFilter: string | undefined, limit: number): Promise<ShardOverview> {
    this.invoked();
    await this.ready();
    return {
      stats: this.shard.stats(),
      counts: this.shard.counts(),
      subscriptions: this.shard.listSubscriptions(undefined, undefined, limit),
      retained: retainedFilter === undefined ? [] : this.shard.retainedMatching(retainedFilter).slice(0, limit),
    };
  }

  async listRetained(filter: string, limit: number): Promise<RoutedMessage[]> {
    await this.ready();
    return this.shard.retainedMatching(filter).slice(0, limit);
  }

  async deleteRetained(filter: string): Promise<number> {
    await this.ready();
    return this.shard.deleteRetained(filter);
  }

  async listSubscriptions(
    within: string,
    clientId: string | undefined,
    limit: number,
  ): Promise<(Subscription & { clientId: string })[]> {
    await this.ready();
    return this.shard.listSubscriptions(within, clientId, limit);
  }

  /** A leaving shared-subscription member's unfinished message, for another member. */
  async redistribute(shareFilter: string, leaving: string, message: RoutedMessage, order?: CallOrder): Promise<void> {
    this.invoked();
    await this.ready();
    await this.fromSessions.run(order, () => this.shard.redistribute(shareFilter, leaving, message));
  }
}
