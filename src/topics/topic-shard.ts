/**
 * One TopicShard: the subscription index and retained messages for the topics that hash to it.
 * SQLite is the truth; the trie is a cache rebuilt on wake.
 */
import type { BrokerConfig } from "../config";
import type {
  Delivery,
  DeliveryOutcome,
  DeliveryReply,
  QoS,
  RoutedMessage,
  Subscription,
  SubscriptionOptions,
} from "../protocol/message";
import { propertiesFromJson, propertiesToJson, remainingExpiry } from "../protocol/properties";
import { filterCovers, parseSharedFilter, topicMatches } from "../protocol/topic";
import { Totals } from "../observability/totals";
import { Batcher } from "../util/batcher";
import { CallLimit } from "../util/call-limit";
import { counters } from "../observability/counters";
import { logText } from "../observability/log-text";
import { SubscriptionTrie, type GroupMatch } from "./subscription-trie";
import { inEveryShard } from "./shard-rule";

/**
 * Sends one batch to one session. With `onlyIfOnline`, a session whose client is not connected
 * takes nothing and answers "offline" (used to pick a connected member of a shared subscription).
 * The reply's spacing paces this shard's next calls to that session (util/call-pacing.ts).
 */
export type DeliverFn = (clientId: string, batch: Delivery[], onlyIfOnline: boolean) => Promise<DeliveryReply>;

/** What a shard counts (metrics): since the shard's storage began, except what a restart lost. */
export interface ShardStats {
  published: Record<string, number>;
  publishedBytes: number;
  delivered: Record<string, number>;
  deliveredBytes: number;
  dropped: Record<string, number>;
  deliveryFailures: number;
  invocations: number;
  retainedMessages: number;
  retainedBytes: number;
  subscriptionEntries: number;
}

/** See TopicShard.counts(). */
export interface ShardCounts {
  ownSubscriptions: number;
  everywhereSubscriptions: number;
  retained: number;
  dollarRetained: number;
}

/** Why no member of a shared subscription took a message (the `dropped` metric's reason). */
type GroupDrop = "not_authorized" | "no_subscribers";
const GROUP_DROPS: ReadonlySet<string> = new Set<GroupDrop>(["not_authorized", "no_subscribers"]);

/**
 * Which rows the shard serves (shard-growth.ts): while a grown shard has not taken its keys from
 * this one, their rows stay here, never matched, listed, counted or returned as retained.
 */
export interface Ownership {
  readonly holdsMoved: boolean;
  ownsTopic(topic: string): boolean;
  holdsFilter(filter: string): boolean;
}

/** A shard that holds only its own rows. */
const OWNS_EVERYTHING: Ownership = { holdsMoved: false, ownsTopic: () => true, holdsFilter: () => true };

/**
 * Most deliveries sent to one session in one call, and held for it while it is paced: a batch that
 * reaches it goes at once, paced or not (a larger backlog is split; nothing is dropped).
 */
export const MAX_DELIVERY_BATCH = 256;

/**
 * Most `deliver` calls one shard keeps waiting for room under MAX_SHARD_DELIVERIES_IN_FLIGHT. What
 * waits is bounded before this by its publishers: a QoS 1/2 publish waits for its deliveries, so at
 * most Receive Maximum of them per publisher. One beyond it fails at once, as a session that cannot
 * be reached does: the QoS 1/2 publisher is not acknowledged and sends again; QoS 0 is not delivered.
 */
export const MAX_WAITING_DELIVERIES = 65536;

export class TopicShard {
  private trie = new SubscriptionTrie();
  /** Per-session batches of deliveries from several publishes, sent together (one call each). */
  private readonly deliveryBatches: Batcher<string, Delivery, DeliveryOutcome>;
  /**
   * Per-member batches of shared-subscription offers to connected members (`onlyIfOnline`), batched
   * and paced as deliveryBatches; each offer's answer is its own ("unreadable": declined alone).
   */
  private readonly shareOffers: Batcher<string, Delivery, DeliveryOutcome>;
  /** Round-robin position per shared subscription (in memory: fairness need not survive a restart). */
  private readonly cursors = new Map<string, number>();
  private readonly totals: Totals;
  /** `deliver` calls in flight toward sessions, at most MAX_SHARD_DELIVERIES_IN_FLIGHT; the rest wait in order. */
  private readonly deliveryCalls: CallLimit;

  constructor(
    private readonly sql: SqlStorage,
    private readonly config: BrokerConfig,
    private readonly deliverTo: DeliverFn,
    private readonly now: () => number,
    /**
     * Runs `fn` after the events already waiting and DELIVERY_BATCH_MS (0 by default): what batches
     * deliveries per session.
     */
    later: (fn: () => void) => void = (fn) => setTimeout(fn, config.deliveryBatchMs),
    /** Asks for flushTotals() at `at` (the object's timer); without it, counters are written only when asked. */
    scheduleTotals: (at: number) => void = () => {},
    private readonly ownership: Ownership = OWNS_EVERYTHING,
  ) {
    // A hot session asks for spacing between calls: what arrives meanwhile waits for the next one.
    const clock = { now, after: (ms: number, fn: () => void) => void setTimeout(fn, ms) };
    const batcher = (onlyIfOnline: boolean) =>
      new Batcher<string, Delivery, DeliveryOutcome>(
        async (clientId, batch) => {
          const { outcome, declined } = await this.deliverOrForget(clientId, batch, onlyIfOnline);
          return batch.map((_, i) => (declined?.includes(i) ? "unreadable" : outcome));
        },
        later,
        MAX_DELIVERY_BATCH,
        clock,
      );
    this.deliveryBatches = batcher(false);
    this.shareOffers = batcher(true);
    this.totals = new Totals(sql, now, scheduleTotals);
    this.deliveryCalls = new CallLimit(
      config.maxShardDeliveriesInFlight,
      MAX_WAITING_DELIVERIES,
      (inFlight, waited) => {
        counters.shardDeliveriesInFlightPeak = Math.max(counters.shardDeliveriesInFlightPeak, inFlight);
        if (waited) counters.shardDeliveriesWaited++;
      },
    );
    sql.exec(`CREATE TABLE IF NOT EXISTS subs (client_id TEXT, filter TEXT, qos INTEGER, no_local INTEGER,
      rap INTEGER, sub_id INTEGER, PRIMARY KEY (client_id, filter))`);
    sql.exec(`CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, payload BLOB, qos INTEGER,
      props TEXT, received_at INTEGER)`);
    this.reload();
  }

  /** Rebuilds the trie from SQLite (on wake, and after rows came or went in a growth). */
  reload(): void {
    this.trie = new SubscriptionTrie();
    for (const r of this.sql.exec<Record<string, SqlStorageValue>>(`SELECT * FROM subs`)) {
      this.index(r.filter as string, r.client_id as string, {
        qos: r.qos as QoS,
        noLocal: r.no_local === 1,
        retainAsPublished: r.rap === 1,
        retainHandling: 0,
        subscriptionId: (r.sub_id as number | null) ?? undefined,
      });
    }
  }

  /** Whether a retained topic is this shard's to serve (only a parent mid-growth holds others). */
  private ownsTopic(topic: string): boolean {
    return !this.ownership.holdsMoved || this.ownership.ownsTopic(topic);
  }

  /** Whether a subscription row is this shard's to list and count (as ownsTopic). */
  private holdsFilter(filter: string): boolean {
    return !this.ownership.holdsMoved || this.ownership.holdsFilter(filter);
  }

  /** Adds to the trie; a `$share/{group}/{filter}` subscription joins its group at `filter`. */
  private index(filter: string, clientId: string, options: SubscriptionOptions): void {
    const shared = parseSharedFilter(filter);
    if (shared) this.trie.add(shared.filter, clientId, options, shared.group);
    else this.trie.add(filter, clientId, options);
  }

  private unindex(filter: string, clientId: string): void {
    const shared = parseSharedFilter(filter);
    if (shared) this.trie.remove(shared.filter, clientId, shared.group);
    else this.trie.remove(filter, clientId);
  }

  /** Registers subscriptions; returns, per filter in `retainedFor`, the retained messages it matches. */
  subscribe(clientId: string, subs: Subscription[], retainedFor: string[]): RoutedMessage[][] {
    for (const s of subs) {
      this.sql.exec(
        `INSERT OR REPLACE INTO subs (client_id, filter, qos, no_local, rap, sub_id) VALUES (?, ?, ?, ?, ?, ?)`,
        clientId,
        s.filter,
        s.qos,
        s.noLocal ? 1 : 0,
        s.retainAsPublished ? 1 : 0,
        s.subscriptionId ?? null,
      );
      this.index(s.filter, clientId, s);
    }
    // [MQTT-3.8.4-?] no retained messages are sent for a shared subscription
    return retainedFor.map((filter) => (parseSharedFilter(filter) ? [] : this.retainedMatching(filter)));
  }

  unsubscribe(clientId: string, filters: string[]): void {
    for (const filter of filters) {
      this.sql.exec(`DELETE FROM subs WHERE client_id = ? AND filter = ?`, clientId, filter);
      this.unindex(filter, clientId);
    }
  }

  /** Forgets every subscription of a client (its session is gone). */
  removeClient(clientId: string): void {
    const filters = this.sql
      .exec<{ filter: string }>(`SELECT filter FROM subs WHERE client_id = ?`, clientId)
      .toArray()
      .map((r) => r.filter);
    this.unsubscribe(clientId, filters);
  }

  /**
   * Stores or clears the retained message, then delivers to every matching session, one batch per
   * session. Resolves once every QoS 1/2 delivery is safe in its session (written, or acknowledged by
   * its client: Session.deliver); rejects otherwise, so the publisher is not acknowledged and will resend.
   */
  async publish(message: RoutedMessage): Promise<number> {
    if (message.retain) this.retain(message);
    const { clients, groups } = this.trie.matchAll(message.topic, message.origin);
    this.totals.add(`published:${message.qos}`);
    this.totals.add("published_bytes", message.payload.length);
    if (clients.size + groups.length === 0) this.totals.add("dropped:no_subscribers");
    const failures: unknown[] = [];
    // A session's answer ("ok", "gone": forgotten here too) means it took the copy; a group's
    // answer is a drop reason when no member took it.
    const attempt = async (qos: QoS, send: () => Promise<DeliveryOutcome | GroupDrop | undefined>) => {
      try {
        const answer = await send();
        if (answer !== undefined && GROUP_DROPS.has(answer)) return this.totals.add(`dropped:${answer}`);
        this.totals.add(`delivered:${qos}`);
        this.totals.add("delivered_bytes", message.payload.length);
      } catch (err) {
        this.totals.add("delivery_failures");
        if (qos > 0) failures.push(err);
      }
    };
    await Promise.all([
      ...[...clients].map(([clientId, match]) => {
        const delivery: Delivery = {
          message,
          // [MQTT-3.8.4-8] delivered at the lower of the published and the granted QoS
          qos: Math.min(message.qos, match.qos) as QoS,
          // [MQTT-3.3.1-12] RETAIN is 0 on forwarding unless Retain As Published is set
          retain: message.retain && match.retainAsPublished,
          subscriptionIds: match.subscriptionIds.length ? match.subscriptionIds : undefined,
        };
        return attempt(delivery.qos, () => this.deliveryBatches.add(clientId, delivery));
      }),
      ...groups.map((group) => attempt(message.qos, () => this.deliverToGroup(group, message))),
    ]);
    if (failures.length) throw new Error(`delivery failed to ${failures.length} session(s): ${String(failures[0])}`);
    return clients.size + groups.length;
  }

  /**
   * A message a leaving member of a shared subscription hands back (not yet sent to it, or QoS 1
   * unacknowledged; never a QoS 2 message once sent [MQTT-4.8.2-5]: Subscriptions.handOverShared in
   * src/session/subscriptions.ts): given to another member [MQTT-4.8.2]. Dropped when the group has no other member. Rejects when that
   * member's session could not take it: the leaving session keeps the message and retries.
   */
  async redistribute(shareFilter: string, leaving: string, message: RoutedMessage): Promise<void> {
    const shared = parseSharedFilter(shareFilter);
    if (!shared) return;
    const group = this.trie.matchAll(message.topic).groups.find((g) => g.shareFilter === shareFilter);
    if (!group) return;
    const members = group.members.filter(([clientId]) => clientId !== leaving);
    if (members.length) await this.deliverToGroup({ shareFilter, members }, message);
  }

  /**
   * One member of a shared subscription gets the message [MQTT-4.8.2-?]: round robin, preferring a
   * member whose client is connected; when none is, the next member's session queues it. A member
   * that may not read the topic (its grant on the shared filter is partial: Session.deliver) declines,
   * and the next is offered it; when no member may read it, it is dropped like a message nobody
   * subscribes to. Each member is offered it at most once per pass, so nothing goes round in circles.
   */
  private async deliverToGroup(group: GroupMatch, message: RoutedMessage): Promise<GroupDrop | undefined> {
    const n = group.members.length;
    const start = (this.cursors.get(group.shareFilter) ?? 0) % n;
    this.cursors.set(group.shareFilter, start + 1);
    const deliveryFor = (options: SubscriptionOptions): Delivery => ({
      message,
      qos: Math.min(message.qos, options.qos) as QoS,
      retain: message.retain && options.retainAsPublished,
      subscriptionIds: options.subscriptionId ? [options.subscriptionId] : undefined,
      shareFilter: group.shareFilter,
    });
    let declined = false;
    const offer = async (i: number, onlyIfOnline: boolean) => {
      const [clientId, options] = group.members[(start + i) % n]!; // n is the member count
      // To a connected member, offers go batched and paced like any delivery (a member of a group
      // taking a firehose is a hot session); the pass to offline members is rare and goes alone.
      const outcome = onlyIfOnline
        ? await this.shareOffers.add(clientId, deliveryFor(options))
        : (await this.deliverOrForget(clientId, [deliveryFor(options)], false)).outcome;
      declined ||= outcome === "unreadable";
      return outcome === "ok";
    };
    for (let i = 0; i < n; i++) if (await offer(i, true)) return undefined;
    // Nobody who may read it is connected: the next member in turn keeps it in its session (if it
    // still exists).
    for (let i = 0; i < n; i++) if (await offer(i, false)) return undefined;
    return declined ? "not_authorized" : "no_subscribers";
  }

  /**
   * Delivers, within the shard's limit of calls in flight (the calls start in the order they were
   * made, so each session's stay in order [MQTT-4.6.0-6]); a session that no longer exists is forgotten here.
   */
  private async deliverOrForget(clientId: string, batch: Delivery[], onlyIfOnline: boolean): Promise<DeliveryReply> {
    const reply = await this.deliveryCalls.run(() => this.deliverTo(clientId, batch, onlyIfOnline));
    if (reply.outcome === "gone") this.removeClient(clientId);
    else {
      // The spacing is for this shard's calls to that session, whichever batches they carry.
      this.deliveryBatches.pace(clientId, reply.spacingMs);
      this.shareOffers.pace(clientId, reply.spacingMs);
    }
    return reply;
  }

  /** [MQTT-3.3.1-5..7] store, replace, or (empty payload) delete the retained message for a topic. */
  private retain(message: RoutedMessage): void {
    if (message.payload.length === 0) {
      this.sql.exec(`DELETE FROM retained WHERE topic = ?`, message.topic);
      return;
    }
    const exists = this.sql.exec(`SELECT 1 FROM retained WHERE topic = ?`, message.topic).toArray().length > 0;
    const full = () =>
      this.retainedCount() >= this.config.maxRetainedPerShard ||
      this.retainedBytes() + message.payload.length > this.config.maxRetainedBytesPerShard;
    if (!exists && full()) {
      // Documented outcome: a new retained topic beyond the shard's limit is not stored (still delivered).
      console.warn(`retained limit reached, not storing ${logText(message.topic)}`);
      this.totals.add("dropped:retained_limit");
      return;
    }
    this.sql.exec(
      `INSERT OR REPLACE INTO retained (topic, payload, qos, props, received_at) VALUES (?, ?, ?, ?, ?)`,
      message.topic,
      message.payload,
      message.qos,
      propertiesToJson(message.properties),
      message.receivedAt,
    );
  }

  /** Deletes the retained messages whose topics match the filter (admin API); returns how many. */
  deleteRetained(filter: string): number {
    let deleted = 0;
    for (const { topic } of this.sql.exec<{ topic: string }>(`SELECT topic FROM retained`).toArray()) {
      if (!topicMatches(filter, topic) || !this.ownsTopic(topic)) continue;
      this.sql.exec(`DELETE FROM retained WHERE topic = ?`, topic);
      deleted++;
    }
    return deleted;
  }

  /**
   * Subscriptions whose filter lies within `within` (admin API; undefined: every one, `$` filters
   * too), optionally of one client, at most `limit`. A shared subscription is judged by the filter it shares.
   */
  listSubscriptions(
    within: string | undefined,
    clientId: string | undefined,
    limit: number,
  ): (Subscription & { clientId: string })[] {
    const out: (Subscription & { clientId: string })[] = [];
    const rows =
      clientId === undefined
        ? this.sql.exec<Record<string, SqlStorageValue>>(`SELECT * FROM subs ORDER BY client_id, filter`)
        : this.sql.exec<Record<string, SqlStorageValue>>(
            `SELECT * FROM subs WHERE client_id = ? ORDER BY filter`,
            clientId,
          );
    for (const r of rows) {
      const filter = r.filter as string;
      if (!this.holdsFilter(filter)) continue;
      if (
        within !== undefined &&
        !filterCovers(within, parseSharedFilter(filter)?.filter ?? filter) &&
        within !== filter
      )
        continue;
      out.push({
        clientId: r.client_id as string,
        filter,
        qos: r.qos as QoS,
        noLocal: r.no_local === 1,
        retainAsPublished: r.rap === 1,
        retainHandling: 0,
        subscriptionId: (r.sub_id as number | null) ?? undefined,
      });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Writes the counters' unwritten increments (the timer that scheduleTotals asked for). */
  flushTotals(): void {
    this.totals.flush();
  }

  /** When the counters' next write is due (undefined: everything is written). */
  get totalsDueAt(): number | undefined {
    return this.totals.flushDueAt;
  }

  /**
   * What the dashboard counts, as its tables list things: subscriptions held in this shard alone
   * (`own`) and those registered in every shard (`everywhere`: the broker-wide count takes them once),
   * and retained messages apart from `$` topics (`#` does not match those [MQTT-4.7.2-1]).
   */
  counts(): ShardCounts {
    let own = 0;
    let everywhere = 0;
    for (const { filter } of this.sql.exec<{ filter: string }>(`SELECT filter FROM subs`)) {
      if (!this.holdsFilter(filter)) continue;
      if (inEveryShard(filter, this.config.shardLevels)) everywhere++;
      else own++;
    }
    const dollar = this.ownRetained(`WHERE substr(topic, 1, 1) = '$'`).count;
    return {
      ownSubscriptions: own,
      everywhereSubscriptions: everywhere,
      retained: this.retainedCount() - dollar,
      dollarRetained: dollar,
    };
  }

  /** One RPC into the shard (counted by the shell). */
  countInvocation(): void {
    this.totals.add("invocations");
  }

  stats(): ShardStats {
    return {
      published: this.totals.withPrefix("published:"),
      publishedBytes: this.totals.get("published_bytes"),
      delivered: this.totals.withPrefix("delivered:"),
      deliveredBytes: this.totals.get("delivered_bytes"),
      dropped: this.totals.withPrefix("dropped:"),
      deliveryFailures: this.totals.get("delivery_failures"),
      invocations: this.totals.get("invocations"),
      retainedMessages: this.retainedCount(),
      retainedBytes: this.retainedBytes(),
      subscriptionEntries: this.ownership.holdsMoved
        ? this.sql
            .exec<{ filter: string }>(`SELECT filter FROM subs`)
            .toArray()
            .filter((r) => this.holdsFilter(r.filter)).length
        : this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM subs`).one().n,
    };
  }

  retainedBytes(): number {
    return this.ownRetained().bytes;
  }

  retainedCount(): number {
    return this.ownRetained().count;
  }

  /** How many retained messages (`where` narrows them) this shard owns, and their payload bytes. */
  private ownRetained(where = ""): { count: number; bytes: number } {
    if (!this.ownership.holdsMoved) {
      return this.sql
        .exec<{ count: number; bytes: number }>(
          `SELECT COUNT(*) AS count, COALESCE(SUM(LENGTH(payload)), 0) AS bytes FROM retained ${where}`,
        )
        .one();
    }
    let count = 0;
    let bytes = 0;
    for (const r of this.sql.exec<{ topic: string; n: number }>(
      `SELECT topic, LENGTH(payload) AS n FROM retained ${where}`,
    )) {
      if (!this.ownsTopic(r.topic)) continue;
      count++;
      bytes += r.n;
    }
    return { count, bytes };
  }

  /** Retained messages whose topic matches the filter; expired ones are removed on the way. */
  retainedMatching(filter: string): RoutedMessage[] {
    const out: RoutedMessage[] = [];
    const now = this.now();
    for (const r of this.sql.exec<Record<string, SqlStorageValue>>(`SELECT * FROM retained`).toArray()) {
      const topic = r.topic as string;
      // A parent's copy of a moved topic is its child's to serve: never delivered twice.
      if (!topicMatches(filter, topic) || !this.ownsTopic(topic)) continue;
      const properties = propertiesFromJson(r.props as string | null);
      const remaining = remainingExpiry(properties, r.received_at as number, now);
      if (remaining !== undefined && remaining <= 0) {
        this.sql.exec(`DELETE FROM retained WHERE topic = ?`, topic); // [MQTT-3.3.2-5]
        continue;
      }
      out.push({
        id: `retained:${topic}:${r.received_at}`,
        origin: "",
        topic,
        payload: new Uint8Array(r.payload as ArrayBuffer),
        qos: r.qos as QoS,
        retain: true,
        properties,
        receivedAt: r.received_at as number,
      });
    }
    return out;
  }
}
