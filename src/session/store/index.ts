/**
 * A session's durable state, by table: what Session calls (SessionStore), kept in a Durable Object's
 * SQLite (SqliteSessionStore) or in memory (MemorySessionStore, for tests and other runtimes). Both
 * pass one contract suite (test/support/session-store-contract.ts). Every method is synchronous
 * (SQLite in a Durable Object is), so a handler that only touches the store cannot interleave.
 */
import type { Delivery, Subscription } from "../../protocol/message";
import { SqliteInboundQos2, type InboundQos2Part, type InboundQos2Table, type PubrelMatch } from "./inbound-qos2";
import { MemoryInboundQos2, MemoryMeta, MemoryOutboundQueue, MemorySubscriptions, MemoryTopicAliases } from "./memory";
import { SqliteMeta, type MetaPart, type MetaTable, type SessionMeta } from "./meta";
import {
  SqliteOutboundQueue,
  type OutboundQueue,
  type OutboundQueuePart,
  type OutboundRow,
  type OutboundSummary,
} from "./outbound-queue";
import { Schema } from "./schema";
import { SqliteSubscriptions, type SubscriptionPart, type SubscriptionTable } from "./subscriptions";
import { SqliteTopicAliases, type TopicAliasTable } from "./topic-aliases";

export { OutState, queuedMessageBytes, type OutboundRow, type OutboundSummary } from "./outbound-queue";
export { needsNoRow, type SessionMeta, type StoredWill } from "./meta";
export { RELEASED_IDS_KEPT, type PubrelMatch } from "./inbound-qos2";

export interface SessionStore extends MetaTable, SubscriptionTable, OutboundQueue, InboundQos2Table, TopicAliasTable {
  /**
   * Keeps the session's values without writing them, for a session with nothing to keep
   * (`needsNoRow`): loadMeta returns them, a reopened store does not. They are written before the
   * first row of any other table (a subscription, a queued message, a QoS 2 id, an alias), so
   * nothing is ever on disk without its session's values. Once the meta has a row, it is written.
   */
  holdMeta(meta: SessionMeta): void;
  /** The meta has a row (written at some time, not only held). */
  metaStored(): boolean;
  /** Removes every trace of the session, except messages still to be handed over (HANDOVER). */
  clearAll(): void;
  /** Clears subscriptions and messages but keeps meta (a clean start) and HANDOVER rows. */
  clearState(): void;
}

interface Tables {
  meta: MetaPart;
  subs: SubscriptionPart;
  outq: OutboundQueuePart;
  inq2: InboundQos2Part;
  aliases: TopicAliasTable;
}

/** A SessionStore made of one object per table: the two stores differ only in their tables. */
abstract class StoreOfTables implements SessionStore {
  /** Meta held without a row (holdMeta), until something else is written or the session ends. */
  private held?: SessionMeta;

  constructor(private readonly t: Tables) {}

  clearAll(): void {
    this.held = undefined;
    this.t.aliases.clearTopicAliases();
    this.t.meta.clear();
    this.clearState();
  }

  clearState(): void {
    this.t.subs.clear();
    this.t.inq2.clear();
    this.t.outq.clear();
  }

  loadMeta = (): SessionMeta => (this.held ? structuredClone(this.held) : this.t.meta.loadMeta());
  writeMeta = (meta: SessionMeta): void => {
    this.held = undefined;
    this.t.meta.writeMeta(meta);
  };
  holdMeta = (meta: SessionMeta): void => {
    if (this.t.meta.stored()) return this.writeMeta(meta); // a row that exists never goes stale
    this.held = structuredClone(meta);
  };
  metaStored = (): boolean => this.t.meta.stored();

  /** Writes held meta: something else is about to be written. */
  private writeHeld(): void {
    if (this.held) this.writeMeta(this.held);
  }

  subscriptions = (): Subscription[] => this.t.subs.subscriptions();
  hasSubscription = (filter: string): boolean => this.t.subs.hasSubscription(filter);
  subscriptionCount = (): number => this.t.subs.subscriptionCount();
  putSubscription = (s: Subscription): void => {
    this.writeHeld();
    this.t.subs.putSubscription(s);
  };
  deleteSubscription = (filter: string): boolean => this.t.subs.deleteSubscription(filter);

  pendingCount = (): number => this.t.outq.pendingCount();
  pendingBytes = (): number => this.t.outq.pendingBytes();
  outboundHead = (limit: number): OutboundSummary[] => this.t.outq.outboundHead(limit);
  queuedCount = (): number => this.t.outq.queuedCount();
  inflightCount = (): number => this.t.outq.inflightCount();
  isPacketIdInFlight = (packetId: number): boolean => this.t.outq.isPacketIdInFlight(packetId);
  nextSeq = (): number => this.t.outq.nextSeq();
  enqueue = (d: Delivery, state: number, packetId?: number | null, seq?: number): boolean => {
    this.writeHeld();
    return this.t.outq.enqueue(d, state, packetId, seq);
  };
  hasQueued = (): boolean => this.t.outq.hasQueued();
  highestPacketId = (): number => this.t.outq.highestPacketId();
  outboundRows = (states: number[], limit?: number): OutboundRow[] => this.t.outq.outboundRows(states, limit);
  markSent = (seq: number, packetId: number): void => this.t.outq.markSent(seq, packetId);
  findInflight = (packetId: number, state: number): OutboundRow | undefined =>
    this.t.outq.findInflight(packetId, state);
  markReleased = (seq: number): void => this.t.outq.markReleased(seq);
  finish = (row: OutboundRow): void => this.t.outq.finish(row);
  discard = (seq: number): void => this.t.outq.discard(seq);
  holdForHandover = (shareFilter?: string): OutboundRow[] => this.t.outq.holdForHandover(shareFilter);
  handoverRows = (): OutboundRow[] => this.t.outq.handoverRows();
  hasHandovers = (): boolean => this.t.outq.hasHandovers();
  requeue = (seq: number): void => this.t.outq.requeue(seq);

  inboundQos2 = (packetId: number) => this.t.inq2.inboundQos2(packetId);
  inboundQos2Count = (): number => this.t.inq2.inboundQos2Count();
  putInboundQos2 = (packetId: number, msgId: string, routed: boolean): void => {
    this.writeHeld();
    this.t.inq2.putInboundQos2(packetId, msgId, routed);
  };
  markInboundQos2Routed = (packetId: number, msgId: string): void => this.t.inq2.markInboundQos2Routed(packetId, msgId);
  releaseInboundQos2 = (packetId: number): PubrelMatch => this.t.inq2.releaseInboundQos2(packetId);

  clearTopicAliases = (): void => this.t.aliases.clearTopicAliases();
  topicAliasIn = (alias: number): string | undefined => this.t.aliases.topicAliasIn(alias);
  putTopicAliasIn = (alias: number, topic: string): void => {
    this.writeHeld();
    this.t.aliases.putTopicAliasIn(alias, topic);
  };
  topicAliasesOut = (): Map<string, number> => this.t.aliases.topicAliasesOut();
  putTopicAliasOut = (topic: string, alias: number): void => {
    this.writeHeld();
    this.t.aliases.putTopicAliasOut(topic, alias);
  };
}

/** The store of a Session Durable Object: its SQLite, each table created when first written. */
export class SqliteSessionStore extends StoreOfTables {
  constructor(sql: SqlStorage) {
    const schema = new Schema(sql);
    super({
      meta: new SqliteMeta(schema),
      subs: new SqliteSubscriptions(schema),
      outq: new SqliteOutboundQueue(schema),
      inq2: new SqliteInboundQos2(schema),
      aliases: new SqliteTopicAliases(schema),
    });
  }
}

/** The same in plain TypeScript: a session that lives as long as this object. */
export class MemorySessionStore extends StoreOfTables {
  constructor() {
    super({
      meta: new MemoryMeta(),
      subs: new MemorySubscriptions(),
      outq: new MemoryOutboundQueue(),
      inq2: new MemoryInboundQos2(),
      aliases: new MemoryTopicAliases(),
    });
  }
}
