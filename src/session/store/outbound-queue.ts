/**
 * QoS 1/2 messages to this client (`outq`), in the order they were taken (seq): queued behind the
 * in-flight window, in flight, finished QoS 2 kept to recognise a re-routed copy, or being handed to
 * another member of a shared subscription.
 */
import type { Delivery, QoS, RoutedMessage } from "../../protocol/message";
import { propertiesFromJson, propertiesToJson } from "../../protocol/properties";
import { blobBytes, SqliteTable } from "./schema";

/** Outbound message states in `outq`. */
export const OutState = {
  QUEUED: 0,
  /** PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2). */
  SENT: 1,
  /** PUBREL sent, awaiting PUBCOMP. */
  RELEASED: 2,
  /** QoS 2 finished; kept briefly so a re-routed copy with the same id is recognised. */
  DONE: 3,
  /**
   * Taken through a shared subscription and being handed to another member of the group (never
   * sent from here). A row whose hand-over failed stays in this state, across the end of the
   * session, until a retry succeeds: nothing is lost (Subscriptions.handOver in src/session/subscriptions.ts).
   */
  HANDOVER: 4,
} as const;

export interface OutboundRow {
  seq: number;
  msgId: string;
  state: number;
  packetId: number | null;
  delivery: Delivery;
}

/** One outbound QoS 1/2 message as the admin API shows it. */
export interface OutboundSummary {
  topic: string;
  qos: number;
  state: "queued" | "sent" | "released (PUBREL sent)";
  packetId?: number;
  bytes: number;
  receivedAt: number;
}

/** QoS 2 rows kept after PUBCOMP to recognise duplicates of the same message id. */
export const DONE_ROWS_KEPT = 64;

/**
 * What one stored message is counted as against MAX_QUEUED_BYTES besides its payload, topic, message
 * id and origin: the row's integers (seq, QoS, retain, state, packet id, time) and SQLite's record
 * and B-tree cell headers. An estimate; it keeps a queue of tiny messages bounded by bytes too.
 */
export const QUEUED_ROW_OVERHEAD = 64;

/** The bytes a message counts against MAX_QUEUED_BYTES (QUEUED_BYTES_SQL is the same sum over a row). */
export function queuedMessageBytes(d: Delivery): number {
  const m = d.message;
  return m.payload.byteLength + m.topic.length + m.id.length + m.origin.length + QUEUED_ROW_OVERHEAD;
}

/** queuedMessageBytes of a stored row, in SQL (the same for ASCII topics and ids; a close estimate otherwise). */
const QUEUED_BYTES_SQL = `IFNULL(LENGTH(payload), 0) + LENGTH(topic) + LENGTH(msg_id) + IFNULL(LENGTH(origin), 0) + ${QUEUED_ROW_OVERHEAD}`;

export interface OutboundQueue {
  /** Messages queued or in flight (what counts against the queue limit). */
  pendingCount(): number;
  /** Their bytes, each as queuedMessageBytes counts it (what counts against the byte budget). */
  pendingBytes(): number;
  /** The first `limit` stored outbound messages, oldest first, for the admin API (no payloads). */
  outboundHead(limit: number): OutboundSummary[];
  /** Messages waiting behind the in-flight window (not yet sent). */
  queuedCount(): number;
  inflightCount(): number;
  /** Whether a written message in flight uses this packet id. */
  isPacketIdInFlight(packetId: number): boolean;
  /**
   * The next outbound sequence number. Given out in memory so that a message sent before it is
   * written (Session: unstored QoS 1) keeps its place in the order of resends [MQTT-4.6.0-1].
   */
  nextSeq(): number;
  /**
   * Stores a message, queued or already in flight; false when a QoS 2 message with the same id is
   * already known (a duplicate) or the seq is taken.
   */
  enqueue(d: Delivery, state: number, packetId?: number | null, seq?: number): boolean;
  hasQueued(): boolean;
  /** The highest packet id of any row (0: none), where a new session's packet ids start after. */
  highestPacketId(): number;
  /** Rows in the given states, oldest first; at most `limit` (-1: all). */
  outboundRows(states: number[], limit?: number): OutboundRow[];
  /** A queued row goes out. */
  markSent(seq: number, packetId: number): void;
  /** The in-flight row with this packet id in this state, if any. */
  findInflight(packetId: number, state: number): OutboundRow | undefined;
  /** A sent QoS 2 row got its PUBREC. */
  markReleased(seq: number): void;
  /** Finishes a message: QoS 2 rows stay as DONE (the newest DONE_ROWS_KEPT) to recognise duplicates; others go. */
  finish(row: OutboundRow): void;
  /** Drops a queued message that can never be sent (expired, too large for the client). */
  discard(seq: number): void;
  /**
   * Moves messages taken through shared subscriptions to HANDOVER and returns them, oldest first.
   * With `shareFilter` (an unsubscribe), that filter's queued messages only: those it started to
   * send it completes [MQTT-3.10.4-3]. Without (the session ends), every queued one and every QoS 1
   * in flight. QoS 2 in flight never moves: once sent to a member, it is not given to another
   * [MQTT-4.8.2-5].
   */
  holdForHandover(shareFilter?: string): OutboundRow[];
  /** Messages awaiting their hand-over to another member, oldest first. */
  handoverRows(): OutboundRow[];
  hasHandovers(): boolean;
  /** A message whose hand-over failed goes back to this session's queue (an unsubscribe's). */
  requeue(seq: number): void;
}

export interface OutboundQueuePart extends OutboundQueue {
  /** Removes every row except those still to be handed over (HANDOVER). */
  clear(): void;
}

/**
 * How many outbound rows are in each live state, and the packet ids in flight: kept in memory so the
 * delivery path does not count rows with SQL for every message (profiling showed SQLite `exec` and
 * `one` at ~28% of the Worker's CPU in the QoS 1 latency scenario). Loaded from SQLite on first use
 * after a wake; updated by the hot mutations; dropped (reloaded next time) by the rare ones.
 */
interface OutqCensus {
  queued: number;
  sent: number;
  released: number;
  /** queuedMessageBytes of the rows in those three states. */
  bytes: number;
  /** In-flight packet id -> its row (seq): an acknowledgement finds its row by primary key. */
  packetIds: Map<number, number>;
}

type Row = Record<string, SqlStorageValue>;
type HeadRow = { topic: string; qos: number; state: number; packet_id: number | null; bytes: number } & {
  received_at: number;
};

export class SqliteOutboundQueue extends SqliteTable implements OutboundQueuePart {
  private censusCache?: OutqCensus;
  /** The last outbound sequence number given out (rows' order is the order messages were taken). */
  private lastSeq?: number;

  clear(): void {
    this.censusCache = undefined;
    if (this.schema.has("outq")) this.sql.exec(`DELETE FROM outq WHERE state != ?`, OutState.HANDOVER);
  }

  private census(): OutqCensus {
    if (!this.censusCache) {
      const c: OutqCensus = { queued: 0, sent: 0, released: 0, bytes: 0, packetIds: new Map() };
      if (!this.schema.has("outq")) return (this.censusCache = c);
      const byState = `SELECT state, COUNT(*) AS n, SUM(${QUEUED_BYTES_SQL}) AS bytes FROM outq GROUP BY state`;
      for (const r of this.sql.exec<{ state: number; n: number; bytes: number }>(byState)) {
        if (r.state === OutState.QUEUED) c.queued = r.n;
        else if (r.state === OutState.SENT) c.sent = r.n;
        else if (r.state === OutState.RELEASED) c.released = r.n;
        else continue;
        c.bytes += r.bytes;
      }
      for (const r of this.sql.exec<{ packet_id: number; seq: number }>(
        `SELECT packet_id, seq FROM outq WHERE state IN (?, ?)`,
        OutState.SENT,
        OutState.RELEASED,
      ))
        c.packetIds.set(r.packet_id, r.seq);
      this.censusCache = c;
    }
    return this.censusCache;
  }

  /**
   * Moves one row's weight from one state to another in the census (undefined: not counted); `bytes`
   * (its queuedMessageBytes) when it enters or leaves the counted states.
   */
  private recount(
    from: number | undefined,
    to: number | undefined,
    packetId?: number | null,
    seq?: number,
    bytes = 0,
  ): void {
    const c = this.censusCache;
    if (!c) return; // not loaded: the next read loads it from SQLite
    const key = (state: number | undefined) =>
      state === OutState.QUEUED
        ? "queued"
        : state === OutState.SENT
          ? "sent"
          : state === OutState.RELEASED
            ? "released"
            : undefined;
    const f = key(from);
    const t = key(to);
    if (f) c[f]--;
    if (t) c[t]++;
    if (f && !t) c.bytes -= bytes;
    if (t && !f) c.bytes += bytes;
    if (packetId != null) {
      if ((t === "sent" || t === "released") && seq !== undefined) c.packetIds.set(packetId, seq);
      else if (t !== "sent" && t !== "released") c.packetIds.delete(packetId);
    }
  }

  pendingCount(): number {
    const c = this.census();
    return c.queued + c.sent + c.released;
  }

  pendingBytes(): number {
    return this.census().bytes;
  }

  outboundHead(limit: number): OutboundSummary[] {
    if (!this.schema.has("outq")) return [];
    return this.sql
      .exec<HeadRow>(
        `SELECT topic, qos, state, packet_id, LENGTH(payload) AS bytes, received_at FROM outq WHERE state IN (?, ?, ?)
         ORDER BY seq LIMIT ?`,
        OutState.QUEUED,
        OutState.SENT,
        OutState.RELEASED,
        limit,
      )
      .toArray()
      .map((r) => summary(r.topic, r.qos, r.state, r.packet_id, r.bytes, r.received_at));
  }

  queuedCount(): number {
    return this.census().queued;
  }

  inflightCount(): number {
    const c = this.census();
    return c.sent + c.released;
  }

  isPacketIdInFlight(packetId: number): boolean {
    return this.census().packetIds.has(packetId);
  }

  nextSeq(): number {
    if (this.lastSeq === undefined) {
      this.lastSeq = this.schema.has("outq")
        ? (this.sql.exec<{ n: number | null }>(`SELECT MAX(seq) AS n FROM outq`).one().n ?? 0)
        : 0;
    }
    return ++this.lastSeq;
  }

  enqueue(d: Delivery, state: number, packetId: number | null = null, seq = this.nextSeq()): boolean {
    this.schema.ensure("outq");
    const m = d.message;
    const cursor = this.sql.exec<{ seq: number }>(
      `INSERT OR IGNORE INTO outq (seq, msg_id, topic, payload, qos, retain, props, sub_ids, origin, received_at, state,
       packet_id, share_filter) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
      seq,
      m.id,
      m.topic,
      m.payload,
      d.qos,
      d.retain ? 1 : 0,
      propertiesToJson(m.properties),
      d.subscriptionIds?.length ? JSON.stringify(d.subscriptionIds) : null,
      m.origin,
      m.receivedAt,
      state,
      packetId,
      d.shareFilter ?? null,
    );
    const inserted = cursor.toArray()[0];
    if (!inserted) return false;
    this.recount(undefined, state, packetId, inserted.seq, queuedMessageBytes(d));
    return true;
  }

  hasQueued(): boolean {
    return this.census().queued > 0;
  }

  highestPacketId(): number {
    if (!this.schema.has("outq")) return 0;
    return this.sql.exec<{ n: number | null }>(`SELECT MAX(packet_id) AS n FROM outq`).one().n ?? 0;
  }

  outboundRows(states: number[], limit = -1): OutboundRow[] {
    if (!this.schema.has("outq")) return [];
    const marks = states.map(() => "?").join(",");
    return this.sql
      .exec<Row>(`SELECT * FROM outq WHERE state IN (${marks}) ORDER BY seq LIMIT ?`, ...states, limit)
      .toArray()
      .map(rowToOutbound);
  }

  markSent(seq: number, packetId: number): void {
    this.sql.exec(`UPDATE outq SET state = ?, packet_id = ? WHERE seq = ?`, OutState.SENT, packetId, seq);
    this.recount(OutState.QUEUED, OutState.SENT, packetId, seq);
  }

  findInflight(packetId: number, state: number): OutboundRow | undefined {
    const seq = this.census().packetIds.get(packetId);
    if (seq === undefined) return undefined;
    const rows = this.sql.exec<Row>(`SELECT * FROM outq WHERE seq = ? AND state = ?`, seq, state).toArray();
    const [row] = rows;
    return row ? rowToOutbound(row) : undefined;
  }

  markReleased(seq: number): void {
    this.sql.exec(`UPDATE outq SET state = ? WHERE seq = ?`, OutState.RELEASED, seq);
    this.recount(OutState.SENT, OutState.RELEASED);
  }

  finish(row: OutboundRow): void {
    this.recount(row.state, undefined, row.packetId, undefined, queuedMessageBytes(row.delivery));
    if (row.delivery.qos === 2) {
      const done = `UPDATE outq SET state = ?, packet_id = NULL, payload = NULL WHERE seq = ?`;
      this.sql.exec(done, OutState.DONE, row.seq);
      this.sql.exec(
        `DELETE FROM outq WHERE state = ?
         AND seq <= (SELECT seq FROM outq WHERE state = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
        OutState.DONE,
        OutState.DONE,
        DONE_ROWS_KEPT,
      );
    } else {
      this.sql.exec(`DELETE FROM outq WHERE seq = ?`, row.seq);
    }
  }

  discard(seq: number): void {
    this.sql.exec(`DELETE FROM outq WHERE seq = ?`, seq);
    this.censusCache = undefined; // rare: recounted on the next read
  }

  holdForHandover(shareFilter?: string): OutboundRow[] {
    if (!this.schema.has("outq")) return [];
    const held =
      shareFilter === undefined
        ? this.sql.exec<Row>(
            `UPDATE outq SET state = ?, packet_id = NULL
             WHERE share_filter IS NOT NULL AND (state = ? OR (state = ? AND qos = 1)) RETURNING *`,
            OutState.HANDOVER,
            OutState.QUEUED,
            OutState.SENT,
          )
        : this.sql.exec<Row>(
            `UPDATE outq SET state = ? WHERE share_filter = ? AND state = ? RETURNING *`,
            OutState.HANDOVER,
            shareFilter,
            OutState.QUEUED,
          );
    const rows = held
      .toArray()
      .map(rowToOutbound)
      .sort((a, b) => a.seq - b.seq);
    if (rows.length) this.censusCache = undefined; // rare: recounted on the next read
    return rows;
  }

  handoverRows(): OutboundRow[] {
    return this.outboundRows([OutState.HANDOVER]);
  }

  hasHandovers(): boolean {
    if (!this.schema.has("outq")) return false;
    return this.sql.exec(`SELECT 1 FROM outq WHERE state = ? LIMIT 1`, OutState.HANDOVER).toArray().length > 0;
  }

  requeue(seq: number): void {
    this.sql.exec(`UPDATE outq SET state = ? WHERE seq = ?`, OutState.QUEUED, seq);
    this.censusCache = undefined;
  }
}

export function summary(
  topic: string,
  qos: number,
  state: number,
  packetId: number | null,
  bytes: number,
  receivedAt: number,
): OutboundSummary {
  return {
    topic,
    qos,
    state: state === OutState.QUEUED ? "queued" : state === OutState.RELEASED ? "released (PUBREL sent)" : "sent",
    packetId: state === OutState.QUEUED ? undefined : (packetId ?? undefined),
    bytes,
    receivedAt,
  };
}

function rowToOutbound(r: Row): OutboundRow {
  const message: RoutedMessage = {
    id: r.msg_id as string,
    origin: r.origin as string,
    topic: r.topic as string,
    payload: blobBytes(r.payload ?? null),
    qos: r.qos as QoS,
    retain: r.retain === 1,
    properties: propertiesFromJson(r.props as string | null),
    receivedAt: r.received_at as number,
  };
  return {
    seq: r.seq as number,
    msgId: r.msg_id as string,
    state: r.state as number,
    packetId: (r.packet_id as number | null) ?? null,
    delivery: {
      message,
      qos: r.qos as QoS,
      retain: r.retain === 1,
      subscriptionIds: r.sub_ids ? (JSON.parse(r.sub_ids as string) as number[]) : undefined,
      shareFilter: (r.share_filter as string | null) ?? undefined,
    },
  };
}
