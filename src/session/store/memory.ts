/**
 * The in-memory tables of MemorySessionStore, one class per table, in plain TypeScript: what they
 * hold and give back matches the SQLite tables beside them (the contract suite checks both).
 */
import type { Delivery, RoutedMessage, Subscription } from "../../protocol/message";
import type { MetaPart, SessionMeta } from "./meta";
import { DONE_ROWS_KEPT, OutState, queuedMessageBytes, summary } from "./outbound-queue";
import type { OutboundQueuePart, OutboundRow, OutboundSummary } from "./outbound-queue";
import { RELEASED_IDS_KEPT, type InboundQos2Part, type PubrelMatch } from "./inbound-qos2";
import type { SubscriptionPart } from "./subscriptions";
import type { TopicAliasTable } from "./topic-aliases";

/** In memory: a copy in, a copy out, so a caller's later changes are not stored until written. */
export class MemoryMeta implements MetaPart {
  private meta: SessionMeta = {};
  private written = false;

  loadMeta(): SessionMeta {
    return structuredClone(this.meta);
  }

  writeMeta(meta: SessionMeta): void {
    this.meta = structuredClone(meta);
    this.written = true;
  }

  clear(): void {
    this.meta = {};
  }

  stored(): boolean {
    return this.written;
  }
}

export class MemorySubscriptions implements SubscriptionPart {
  private readonly byFilter = new Map<string, Subscription>();

  subscriptions(): Subscription[] {
    return [...this.byFilter.values()].map((s) => ({ ...s }));
  }

  hasSubscription(filter: string): boolean {
    return this.byFilter.has(filter);
  }

  subscriptionCount(): number {
    return this.byFilter.size;
  }

  putSubscription(s: Subscription): void {
    this.byFilter.delete(s.filter); // a replaced row is a new row, as in SQLite
    this.byFilter.set(s.filter, {
      filter: s.filter,
      qos: s.qos,
      noLocal: s.noLocal === true,
      retainAsPublished: s.retainAsPublished === true,
      retainHandling: s.retainHandling,
      subscriptionId: s.subscriptionId,
    });
  }

  deleteSubscription(filter: string): boolean {
    return this.byFilter.delete(filter);
  }

  clear(): void {
    this.byFilter.clear();
  }
}

/**
 * In memory, rows by seq. A stored delivery reads back as SQLite's does: the message at the
 * delivery's QoS and retain flag (the row has one of each), no empty subscription id list.
 */
export class MemoryOutboundQueue implements OutboundQueuePart {
  private readonly bySeq = new Map<number, OutboundRow>();
  private lastSeq?: number;

  clear(): void {
    for (const [seq, row] of this.bySeq) if (row.state !== OutState.HANDOVER) this.bySeq.delete(seq);
  }

  /** Rows in seq order, matching `keep`. */
  private select(keep: (row: OutboundRow) => boolean): OutboundRow[] {
    return [...this.bySeq.values()].filter(keep).sort((a, b) => a.seq - b.seq);
  }

  private count(...states: number[]): number {
    return this.select((r) => states.includes(r.state)).length;
  }

  pendingCount(): number {
    return this.count(OutState.QUEUED, OutState.SENT, OutState.RELEASED);
  }

  pendingBytes(): number {
    const pending = [OutState.QUEUED, OutState.SENT, OutState.RELEASED] as number[];
    return this.select((r) => pending.includes(r.state)).reduce((sum, r) => sum + queuedMessageBytes(r.delivery), 0);
  }

  outboundHead(limit: number): OutboundSummary[] {
    return this.outboundRows([OutState.QUEUED, OutState.SENT, OutState.RELEASED], limit).map((r) =>
      summary(
        r.delivery.message.topic,
        r.delivery.qos,
        r.state,
        r.packetId,
        r.delivery.message.payload.length,
        r.delivery.message.receivedAt,
      ),
    );
  }

  queuedCount(): number {
    return this.count(OutState.QUEUED);
  }

  inflightCount(): number {
    return this.count(OutState.SENT, OutState.RELEASED);
  }

  isPacketIdInFlight(packetId: number): boolean {
    return this.inflight(packetId) !== undefined;
  }

  private inflight(packetId: number): OutboundRow | undefined {
    const inFlight = (r: OutboundRow) => r.state === OutState.SENT || r.state === OutState.RELEASED;
    return this.select((r) => inFlight(r) && r.packetId === packetId)[0];
  }

  nextSeq(): number {
    this.lastSeq ??= Math.max(0, ...this.bySeq.keys());
    return ++this.lastSeq;
  }

  enqueue(d: Delivery, state: number, packetId: number | null = null, seq = this.nextSeq()): boolean {
    const m = d.message;
    const duplicate = d.qos === 2 && this.select((r) => r.delivery.qos === 2 && r.msgId === m.id).length > 0;
    if (duplicate || this.bySeq.has(seq)) return false;
    const message: RoutedMessage = structuredClone({ ...m, qos: d.qos, retain: d.retain });
    const delivery: Delivery = { message, qos: d.qos, retain: d.retain };
    if (d.subscriptionIds?.length) delivery.subscriptionIds = [...d.subscriptionIds];
    if (d.shareFilter !== undefined) delivery.shareFilter = d.shareFilter;
    this.bySeq.set(seq, { seq, msgId: m.id, state, packetId, delivery });
    return true;
  }

  hasQueued(): boolean {
    return this.queuedCount() > 0;
  }

  highestPacketId(): number {
    return Math.max(0, ...this.select((r) => r.packetId !== null).map((r) => r.packetId!));
  }

  outboundRows(states: number[], limit = -1): OutboundRow[] {
    const rows = this.select((r) => states.includes(r.state));
    return (limit < 0 ? rows : rows.slice(0, limit)).map((r) => structuredClone(r));
  }

  markSent(seq: number, packetId: number): void {
    this.update(seq, { state: OutState.SENT, packetId });
  }

  private update(seq: number, change: Partial<OutboundRow>): void {
    const row = this.bySeq.get(seq);
    if (row) Object.assign(row, change);
  }

  findInflight(packetId: number, state: number): OutboundRow | undefined {
    const row = this.inflight(packetId);
    return row?.state === state ? structuredClone(row) : undefined;
  }

  markReleased(seq: number): void {
    this.update(seq, { state: OutState.RELEASED });
  }

  finish(row: OutboundRow): void {
    if (row.delivery.qos !== 2) {
      this.bySeq.delete(row.seq);
      return;
    }
    const done = this.bySeq.get(row.seq);
    if (done) {
      Object.assign(done, { state: OutState.DONE, packetId: null });
      done.delivery.message.payload = new Uint8Array(0);
    }
    const kept = this.select((r) => r.state === OutState.DONE);
    for (const old of kept.slice(0, Math.max(0, kept.length - DONE_ROWS_KEPT))) this.bySeq.delete(old.seq);
  }

  discard(seq: number): void {
    this.bySeq.delete(seq);
  }

  holdForHandover(shareFilter?: string): OutboundRow[] {
    const held = this.select((r) =>
      shareFilter === undefined
        ? r.delivery.shareFilter !== undefined &&
          (r.state === OutState.QUEUED || (r.state === OutState.SENT && r.delivery.qos === 1))
        : r.delivery.shareFilter === shareFilter && r.state === OutState.QUEUED,
    );
    for (const row of held) {
      row.state = OutState.HANDOVER;
      if (shareFilter === undefined) row.packetId = null;
    }
    return held.map((r) => structuredClone(r));
  }

  handoverRows(): OutboundRow[] {
    return this.outboundRows([OutState.HANDOVER]);
  }

  hasHandovers(): boolean {
    return this.count(OutState.HANDOVER) > 0;
  }

  requeue(seq: number): void {
    this.update(seq, { state: OutState.QUEUED });
  }
}

export class MemoryInboundQos2 implements InboundQos2Part {
  /** Messages awaiting PUBREL. */
  private readonly byPacketId = new Map<number, { msgId: string; routed: boolean }>();
  /** Released packet ids, oldest first (a Set keeps insertion order); at most RELEASED_IDS_KEPT. */
  private readonly released = new Set<number>();

  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined {
    const row = this.byPacketId.get(packetId);
    return row && { ...row };
  }

  inboundQos2Count(): number {
    return this.byPacketId.size;
  }

  putInboundQos2(packetId: number, msgId: string, routed: boolean): void {
    this.released.delete(packetId);
    this.byPacketId.set(packetId, { msgId, routed });
  }

  markInboundQos2Routed(packetId: number, msgId: string): void {
    const row = this.byPacketId.get(packetId);
    if (row?.msgId === msgId) row.routed = true;
  }

  releaseInboundQos2(packetId: number): PubrelMatch {
    if (!this.byPacketId.delete(packetId)) return this.released.has(packetId) ? "repeated" : "unknown";
    if (this.released.size >= RELEASED_IDS_KEPT) this.released.delete(this.released.values().next().value!);
    this.released.add(packetId);
    return "released";
  }

  clear(): void {
    this.byPacketId.clear();
    this.released.clear();
  }
}

export class MemoryTopicAliases implements TopicAliasTable {
  private readonly aliasIn = new Map<number, string>();
  private readonly aliasOut = new Map<string, number>();

  clearTopicAliases(): void {
    this.aliasIn.clear();
    this.aliasOut.clear();
  }

  topicAliasIn(alias: number): string | undefined {
    return this.aliasIn.get(alias);
  }

  putTopicAliasIn(alias: number, topic: string): void {
    this.aliasIn.set(alias, topic);
  }

  topicAliasesOut(): Map<string, number> {
    return new Map(this.aliasOut);
  }

  putTopicAliasOut(topic: string, alias: number): void {
    this.aliasOut.set(topic, alias);
  }
}
