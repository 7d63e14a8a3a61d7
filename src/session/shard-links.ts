/**
 * A session's calls to the TopicShards: publishes (through the shard router, batched), shared-
 * subscription hand-overs, and subscribe / unsubscribe fanned out to every shard a filter lives in.
 * Every call is numbered per shard (util/ordered-calls.ts), so each shard handles this session's
 * calls in the order they were made. The gateway routes the messages a session hands it with one
 * per connection, the same way (gateway/edge-route.ts), over requests it can cancel
 * (topics/shard-publish-request.ts).
 */
import type { RoutedMessage, Subscription } from "../protocol/message";
import { shardsForFilter } from "../topics/shard-rule";
import { ShardRouter, type ShardLayout } from "../topics/shard-router";
import type { TopicShardObject } from "../topics/topic-shard-object";
import { counters } from "../observability/counters";
import { OrderedChannels, type CallOrder } from "../util/ordered-calls";

type ShardStub = DurableObjectStub<TopicShardObject>;
/** How a `publishMany` call reaches the shard: its RPC method, unless given another way. */
export type PublishCall = (shard: ShardStub, messages: RoutedMessage[], order: CallOrder) => Promise<number[]>;

const PUBLISH_CALL_COUNTERS = {
  session: "sessionPublishCalls",
  gateway: "gatewayPublishCalls",
  bridge: "bridgePublishCalls",
} as const;

export class ShardLinks {
  /** One numbered channel per shard. */
  private readonly shards: OrderedChannels<number, ShardStub>;
  /** Publishes to one shard from packets that arrived together go in one call. */
  private readonly router: ShardRouter;

  constructor(
    private readonly layout: ShardLayout,
    shardStub: (index: number) => ShardStub,
    newId: () => string,
    /** Who calls, for the counters: a Session object, the gateway or a Bridge object. */
    caller: "session" | "gateway" | "bridge" = "session",
    /** Each publish call made (the gateway counts its subrequests: edge-route.ts). */
    onPublishCall: () => void = () => undefined,
    publish: PublishCall = (shard, messages, order) => shard.publishMany(messages, order),
    /**
     * Sees every call the caller will wait for, from when it is asked (a Session object is busy, and
     * billed, until the answer: observability/busy-clock.ts); returns it unchanged.
     */
    private readonly waitedOn: <T>(call: Promise<T>) => Promise<T> = (call) => call,
  ) {
    // One channel per shard: bounded by the shard count.
    this.shards = new OrderedChannels(shardStub, newId, Number.MAX_SAFE_INTEGER);
    const counted = PUBLISH_CALL_COUNTERS[caller];
    this.router = new ShardRouter(
      layout,
      (index, messages) => {
        counters[counted]++;
        onPublishCall();
        return this.shards.call(index, (shard, order) => publish(shard, messages, order));
      },
      (fn) => setTimeout(fn, 0),
    );
  }

  /** SessionIO.route: to the topic's shard, with the messages routed in the same turn. */
  route(message: RoutedMessage): Promise<number> {
    return this.waitedOn(this.router.route(message));
  }

  /** SessionIO.redistribute: through the shard that owns the message's topic. */
  redistribute(shareFilter: string, leaving: string, message: RoutedMessage): Promise<void> {
    return this.waitedOn(
      this.shards.call(this.router.shardFor(message.topic), (shard, order) =>
        shard.redistribute(shareFilter, leaving, message, order),
      ),
    );
  }

  /** SessionIO.subscribe: one call per shard; the retained messages of each `retainedFor` filter, merged. */
  subscribe(clientId: string, subs: Subscription[], retainedFor: string[]): Promise<RoutedMessage[][]> {
    return this.waitedOn(this.subscribeAll(clientId, subs, retainedFor));
  }

  private async subscribeAll(
    clientId: string,
    subs: Subscription[],
    retainedFor: string[],
  ): Promise<RoutedMessage[][]> {
    const byShard = new Map<number, { subs: Subscription[]; retainedFor: string[] }>();
    for (const sub of subs) {
      for (const index of this.shardsFor(sub.filter)) {
        let entry = byShard.get(index);
        if (!entry) byShard.set(index, (entry = { subs: [], retainedFor: [] }));
        entry.subs.push(sub);
        if (retainedFor.includes(sub.filter)) entry.retainedFor.push(sub.filter);
      }
    }
    const merged: RoutedMessage[][] = retainedFor.map(() => []);
    await Promise.all(
      [...byShard].map(async ([index, entry]) => {
        const found = await this.shards.call(index, (shard, order) =>
          shard.subscribe(clientId, entry.subs, entry.retainedFor, order),
        );
        // (RPC's types widen the [name, value] tuples of User Properties to string[])
        entry.retainedFor.forEach((filter, i) =>
          merged[retainedFor.indexOf(filter)]!.push(...(found[i] as RoutedMessage[])),
        );
      }),
    );
    return merged;
  }

  /** SessionIO.unsubscribe: one call per shard the filters live in. */
  unsubscribe(clientId: string, filters: string[]): Promise<void> {
    const byShard = new Map<number, string[]>();
    for (const filter of filters) {
      for (const index of this.shardsFor(filter)) byShard.set(index, [...(byShard.get(index) ?? []), filter]);
    }
    const calls = [...byShard].map(([index, list]) =>
      this.shards.call(index, (shard, order) => shard.unsubscribe(clientId, list, order)),
    );
    return this.waitedOn(Promise.all(calls).then(() => undefined));
  }

  private shardsFor(filter: string): number[] {
    return shardsForFilter(filter, this.layout.shardCount, this.layout.shardLevels);
  }
}
