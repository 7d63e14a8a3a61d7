/**
 * A session's durable state in its Durable Object's SQLite database. Every method is synchronous
 * (SQLite in a Durable Object is), so a handler that only touches the store cannot interleave.
 */
import type { Delivery, QoS, RoutedMessage, Subscription } from "../protocol/message";
import { propertiesFromJson, propertiesToJson } from "../protocol/properties";

/** Session-wide values, one row each in `meta`. */
export interface SessionMeta {
  clientId?: string;
  /** Username (or token subject) of the identity that owns the session; "" for anonymous. */
  owner?: string;
  /** The owning connection's Identity as JSON (for the ACL outside a connection's events). */
  identity?: string;
  version?: number;
  /** Seconds the session outlives its connection (0: it ends with the connection). */
  expiryInterval?: number;
  /** Connection id of the live connection, absent while offline. */
  connId?: string;
  /** Will message of the live connection (JSON), absent when none. */
  will?: string;
  /** Epoch ms at which a delayed will is due. */
  willAt?: number;
  /** Epoch ms at which an offline session ends. */
  expireAt?: number;
  /** The client's Receive Maximum (v5) for outbound QoS 1/2. */
  clientReceiveMax?: number;
  /** The client's Maximum Packet Size (v5). */
  clientMaxPacketSize?: number;
  /** The client's Topic Alias Maximum (v5): aliases we may use towards it. */
  clientTopicAliasMax?: number;
  /** The client's Request Problem Information (v5; absent means 1). */
  problemInfo?: boolean;
  /** QoS 1/2 messages dropped because the queue was full (documented outcome). */
  droppedQueueFull?: number;
  /** Epoch ms of the live (or last) connection's CONNACK. */
  connectedAt?: number;
  /** Address of the live (or last) connection. */
  remoteAddress?: string;
  /** The queue depth level last reported to the registry (absent: 0). */
  queueLevel?: number;
}

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
   * session, until a retry succeeds: nothing is lost (Session.handOver).
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

/**
 * The session's tables, each created when first written (SessionStore.ensure). Rows written are
 * billed: no AUTOINCREMENT (it writes sqlite_sequence on every insert), and the duplicate check by
 * message id is a partial index over QoS 2 rows only (exactly-once needs it).
 */
const SCHEMA = {
  meta: [`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)`],
  subs: [`CREATE TABLE IF NOT EXISTS subs (filter TEXT PRIMARY KEY, qos INTEGER, no_local INTEGER, rap INTEGER, rh INTEGER, sub_id INTEGER)`],
  outq: [
    `CREATE TABLE IF NOT EXISTS outq (seq INTEGER PRIMARY KEY, msg_id TEXT, topic TEXT, payload BLOB, qos INTEGER,
      retain INTEGER, props TEXT, sub_ids TEXT, origin TEXT, received_at INTEGER, state INTEGER, packet_id INTEGER,
      share_filter TEXT)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS outq_qos2_msg_id ON outq (msg_id) WHERE qos = 2`,
  ],
  inq2: [`CREATE TABLE IF NOT EXISTS inq2 (packet_id INTEGER PRIMARY KEY, msg_id TEXT, routed INTEGER)`],
  alias_in: [`CREATE TABLE IF NOT EXISTS alias_in (alias INTEGER PRIMARY KEY, topic TEXT)`],
  alias_out: [`CREATE TABLE IF NOT EXISTS alias_out (topic TEXT PRIMARY KEY, alias INTEGER)`],
} as const;

/** One outbound QoS 1/2 message as the admin API shows it. */
export interface OutboundSummary {
  topic: string;
  qos: number;
  state: "queued" | "sent" | "released (PUBREL sent)";
  packetId?: number;
  bytes: number;
  receivedAt: number;
}

/** The one `meta` row holding the SessionMeta as JSON. */
const META_KEY = "session";

/** QoS 2 rows kept after PUBCOMP to recognise duplicates of the same message id. */
const DONE_ROWS_KEPT = 64;

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
  /** In-flight packet id -> its row (seq): an acknowledgement finds its row by primary key. */
  packetIds: Map<number, number>;
}

export class SessionStore {
  private censusCache?: OutqCensus;
  /** Packet ids of inbound QoS 2 messages awaiting PUBREL (the inq2 table), loaded on first use. */
  private inboundQos2Ids?: Set<number>;

  /** Tables that exist in this object's database (read once per wake, without writing). */
  private readonly tables: Set<string>;

  constructor(private readonly sql: SqlStorage) {
    this.tables = new Set(
      sql.exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`).toArray().map((r) => r.name),
    );
    // Objects written by an earlier version have an outq without this column.
    if (this.tables.has("outq")) addColumnIfMissing(sql, "outq", "share_filter", "TEXT");
  }

  /**
   * Creates a table the first time something is written to it. Creating the whole schema up front
   * cost ~20 rows written for every new session (a client id never seen before, e.g. every clean
   * web client): most sessions never need the queue, QoS 2 or alias tables.
   */
  private ensure(table: keyof typeof SCHEMA): void {
    if (this.tables.has(table)) return;
    for (const statement of SCHEMA[table]) this.sql.exec(statement);
    this.tables.add(table);
  }

  private has(table: keyof typeof SCHEMA): boolean {
    return this.tables.has(table);
  }

  // --- meta -------------------------------------------------------------------------------

  loadMeta(): SessionMeta {
    if (!this.has("meta")) return {}; // a session that never existed: nothing written to look at it
    const rows = this.sql.exec<{ key: string; value: string }>(`SELECT key, value FROM meta`).toArray();
    const whole = rows.find((r) => r.key === META_KEY);
    if (whole) return JSON.parse(whole.value) as SessionMeta;
    // Objects written by an earlier version kept one row per key.
    return Object.fromEntries(rows.map((r) => [r.key, JSON.parse(r.value)])) as SessionMeta;
  }

  /** Writes the whole meta as one row (rows written are billed; one upsert is one row). */
  writeMeta(meta: SessionMeta): void {
    this.ensure("meta");
    this.sql.exec(
      `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      META_KEY, JSON.stringify(meta),
    );
  }

  /** Removes every trace of the session, except messages still to be handed over (HANDOVER). */
  clearAll(): void {
    this.censusCache = undefined;
    this.inboundQos2Ids = undefined;
    this.clearTopicAliases();
    this.deleteAllFrom("meta", "subs", "inq2");
    this.clearOutq();
  }

  private clearOutq(): void {
    if (this.has("outq")) this.sql.exec(`DELETE FROM outq WHERE state != ?`, OutState.HANDOVER);
  }

  private deleteAllFrom(...tables: (keyof typeof SCHEMA)[]): void {
    for (const table of tables) if (this.has(table)) this.sql.exec(`DELETE FROM ${table}`);
  }

  /** Clears subscriptions and messages but keeps meta (a clean start) and HANDOVER rows. */
  clearState(): void {
    this.censusCache = undefined;
    this.inboundQos2Ids = undefined;
    this.deleteAllFrom("subs", "inq2");
    this.clearOutq();
  }

  // --- subscriptions ----------------------------------------------------------------------

  subscriptions(): Subscription[] {
    if (!this.has("subs")) return [];
    return this.sql
      .exec<{ filter: string; qos: number; no_local: number; rap: number; rh: number; sub_id: number | null }>(
        `SELECT filter, qos, no_local, rap, rh, sub_id FROM subs`,
      )
      .toArray()
      .map((r) => ({
        filter: r.filter,
        qos: r.qos as QoS,
        noLocal: r.no_local === 1,
        retainAsPublished: r.rap === 1,
        retainHandling: r.rh as 0 | 1 | 2,
        subscriptionId: r.sub_id ?? undefined,
      }));
  }

  hasSubscription(filter: string): boolean {
    if (!this.has("subs")) return false;
    return this.sql.exec(`SELECT 1 FROM subs WHERE filter = ?`, filter).toArray().length > 0;
  }

  subscriptionCount(): number {
    if (!this.has("subs")) return 0;
    return this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM subs`).one().n;
  }

  putSubscription(s: Subscription): void {
    this.ensure("subs");
    this.sql.exec(
      `INSERT OR REPLACE INTO subs (filter, qos, no_local, rap, rh, sub_id) VALUES (?, ?, ?, ?, ?, ?)`,
      s.filter, s.qos, s.noLocal ? 1 : 0, s.retainAsPublished ? 1 : 0, s.retainHandling, s.subscriptionId ?? null,
    );
  }

  deleteSubscription(filter: string): boolean {
    if (!this.has("subs")) return false;
    return this.sql.exec(`DELETE FROM subs WHERE filter = ?`, filter).rowsWritten > 0;
  }

  // --- outbound queue (QoS 1/2 to this client) -------------------------------------------

  private census(): OutqCensus {
    if (!this.censusCache) {
      const c: OutqCensus = { queued: 0, sent: 0, released: 0, packetIds: new Map() };
      if (!this.has("outq")) return (this.censusCache = c);
      for (const r of this.sql.exec<{ state: number; n: number }>(`SELECT state, COUNT(*) AS n FROM outq GROUP BY state`)) {
        if (r.state === OutState.QUEUED) c.queued = r.n;
        else if (r.state === OutState.SENT) c.sent = r.n;
        else if (r.state === OutState.RELEASED) c.released = r.n;
      }
      for (const r of this.sql.exec<{ packet_id: number; seq: number }>(
        `SELECT packet_id, seq FROM outq WHERE state IN (?, ?)`, OutState.SENT, OutState.RELEASED,
      )) c.packetIds.set(r.packet_id, r.seq);
      this.censusCache = c;
    }
    return this.censusCache;
  }

  /** Moves one row's weight from one state to another in the census (undefined: not counted). */
  private recount(from: number | undefined, to: number | undefined, packetId?: number | null, seq?: number): void {
    const c = this.censusCache;
    if (!c) return; // not loaded: the next read loads it from SQLite
    const key = (state: number | undefined) =>
      state === OutState.QUEUED ? "queued" : state === OutState.SENT ? "sent" : state === OutState.RELEASED ? "released" : undefined;
    const f = key(from);
    const t = key(to);
    if (f) c[f]--;
    if (t) c[t]++;
    if (packetId != null) {
      if ((t === "sent" || t === "released") && seq !== undefined) c.packetIds.set(packetId, seq);
      else if (t !== "sent" && t !== "released") c.packetIds.delete(packetId);
    }
  }

  /** Messages queued or in flight (what counts against the queue limit). */
  pendingCount(): number {
    const c = this.census();
    return c.queued + c.sent + c.released;
  }

  /** The first `limit` stored outbound messages, oldest first, for the admin API (no payloads). */
  outboundHead(limit: number): OutboundSummary[] {
    if (!this.has("outq")) return [];
    return this.sql
      .exec<{ topic: string; qos: number; state: number; packet_id: number | null; bytes: number; received_at: number }>(
        `SELECT topic, qos, state, packet_id, LENGTH(payload) AS bytes, received_at FROM outq WHERE state IN (?, ?, ?) ORDER BY seq LIMIT ?`,
        OutState.QUEUED, OutState.SENT, OutState.RELEASED, limit,
      )
      .toArray()
      .map((r) => ({
        topic: r.topic,
        qos: r.qos,
        state: r.state === OutState.QUEUED ? "queued" : r.state === OutState.RELEASED ? "released (PUBREL sent)" : "sent",
        packetId: r.state === OutState.QUEUED ? undefined : (r.packet_id ?? undefined),
        bytes: r.bytes,
        receivedAt: r.received_at,
      }));
  }

  /** Messages waiting behind the in-flight window (not yet sent). */
  queuedCount(): number {
    return this.census().queued;
  }

  inflightCount(): number {
    const c = this.census();
    return c.sent + c.released;
  }

  /** Whether a written message in flight uses this packet id. */
  isPacketIdInFlight(packetId: number): boolean {
    return this.census().packetIds.has(packetId);
  }

  /** The last outbound sequence number given out (rows' order is the order messages were taken). */
  private lastSeq?: number;

  /**
   * The next outbound sequence number. Given out in memory so that a message sent before it is
   * written (Session: unstored QoS 1) keeps its place in the order of resends [MQTT-4.6.0-1].
   */
  nextSeq(): number {
    if (this.lastSeq === undefined) {
      this.lastSeq = this.has("outq") ? (this.sql.exec<{ n: number | null }>(`SELECT MAX(seq) AS n FROM outq`).one().n ?? 0) : 0;
    }
    return ++this.lastSeq;
  }

  /**
   * Stores a message, queued or already in flight; false when a QoS 2 message with the same id is
   * already known (a duplicate).
   */
  enqueue(d: Delivery, state: number, packetId: number | null = null, seq = this.nextSeq()): boolean {
    this.ensure("outq");
    const m = d.message;
    const cursor = this.sql.exec<{ seq: number }>(
      `INSERT OR IGNORE INTO outq (seq, msg_id, topic, payload, qos, retain, props, sub_ids, origin, received_at, state,
       packet_id, share_filter) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
      seq, m.id, m.topic, m.payload, d.qos, d.retain ? 1 : 0, propertiesToJson(m.properties),
      d.subscriptionIds?.length ? JSON.stringify(d.subscriptionIds) : null, m.origin, m.receivedAt, state,
      packetId, d.shareFilter ?? null,
    );
    const inserted = cursor.toArray()[0];
    if (!inserted) return false;
    this.recount(undefined, state, packetId, inserted.seq);
    return true;
  }

  hasQueued(): boolean {
    return this.census().queued > 0;
  }

  highestPacketId(): number {
    if (!this.has("outq")) return 0;
    return this.sql.exec<{ n: number | null }>(`SELECT MAX(packet_id) AS n FROM outq`).one().n ?? 0;
  }

  /** Rows in the given states, oldest first. */
  rows(states: number[], limit = -1): OutboundRow[] {
    if (!this.has("outq")) return [];
    const marks = states.map(() => "?").join(",");
    return this.sql
      .exec<Record<string, SqlStorageValue>>(
        `SELECT * FROM outq WHERE state IN (${marks}) ORDER BY seq LIMIT ?`, ...states, limit,
      )
      .toArray()
      .map(rowToOutbound);
  }

  /** A queued row goes out. */
  markSent(seq: number, packetId: number): void {
    this.sql.exec(`UPDATE outq SET state = ?, packet_id = ? WHERE seq = ?`, OutState.SENT, packetId, seq);
    this.recount(OutState.QUEUED, OutState.SENT, packetId, seq);
  }

  /** The in-flight row with this packet id in this state, if any. */
  findInflight(packetId: number, state: number): OutboundRow | undefined {
    const seq = this.census().packetIds.get(packetId);
    if (seq === undefined) return undefined;
    const rows = this.sql
      .exec<Record<string, SqlStorageValue>>(`SELECT * FROM outq WHERE seq = ? AND state = ?`, seq, state)
      .toArray();
    return rows.length ? rowToOutbound(rows[0]) : undefined;
  }

  /** A sent QoS 2 row got its PUBREC. */
  markReleased(seq: number): void {
    this.sql.exec(`UPDATE outq SET state = ? WHERE seq = ?`, OutState.RELEASED, seq);
    this.recount(OutState.SENT, OutState.RELEASED);
  }

  /** Finishes a message: QoS 2 rows stay as DONE (bounded) to recognise duplicates; others go. */
  finish(row: OutboundRow): void {
    this.recount(row.state, undefined, row.packetId);
    if (row.delivery.qos === 2) {
      this.sql.exec(`UPDATE outq SET state = ?, packet_id = NULL, payload = NULL WHERE seq = ?`, OutState.DONE, row.seq);
      this.sql.exec(
        `DELETE FROM outq WHERE state = ? AND seq <= (SELECT seq FROM outq WHERE state = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
        OutState.DONE, OutState.DONE, DONE_ROWS_KEPT,
      );
    } else {
      this.sql.exec(`DELETE FROM outq WHERE seq = ?`, row.seq);
    }
  }

  /** Drops a queued message that can never be sent (expired, too large for the client). */
  discard(seq: number): void {
    this.sql.exec(`DELETE FROM outq WHERE seq = ?`, seq);
    this.censusCache = undefined; // rare: recounted on the next read
  }

  /**
   * Moves messages taken through shared subscriptions to HANDOVER and returns them, oldest first.
   * With `shareFilter` (an unsubscribe), that filter's queued messages only: those it started to
   * send it completes [MQTT-3.10.4-3]. Without (the session ends), every queued one and every QoS 1
   * in flight. QoS 2 in flight never moves: once sent to a member, it is not given to another
   * [MQTT-4.8.2-5].
   */
  holdForHandover(shareFilter?: string): OutboundRow[] {
    if (!this.has("outq")) return [];
    const held = shareFilter === undefined
      ? this.sql.exec<Record<string, SqlStorageValue>>(
          `UPDATE outq SET state = ?, packet_id = NULL WHERE share_filter IS NOT NULL AND (state = ? OR (state = ? AND qos = 1)) RETURNING *`,
          OutState.HANDOVER, OutState.QUEUED, OutState.SENT,
        )
      : this.sql.exec<Record<string, SqlStorageValue>>(
          `UPDATE outq SET state = ? WHERE share_filter = ? AND state = ? RETURNING *`, OutState.HANDOVER, shareFilter, OutState.QUEUED,
        );
    const rows = held.toArray().map(rowToOutbound).sort((a, b) => a.seq - b.seq);
    if (rows.length) this.censusCache = undefined; // rare: recounted on the next read
    return rows;
  }

  /** Messages awaiting their hand-over to another member, oldest first. */
  handoverRows(): OutboundRow[] {
    return this.rows([OutState.HANDOVER]);
  }

  hasHandovers(): boolean {
    if (!this.has("outq")) return false;
    return this.sql.exec(`SELECT 1 FROM outq WHERE state = ? LIMIT 1`, OutState.HANDOVER).toArray().length > 0;
  }

  /** A message whose hand-over failed goes back to this session's queue (an unsubscribe's). */
  requeue(seq: number): void {
    this.sql.exec(`UPDATE outq SET state = ? WHERE seq = ?`, OutState.QUEUED, seq);
    this.censusCache = undefined;
  }

  // --- topic aliases of the live connection -----------------------------------------------

  clearTopicAliases(): void {
    this.deleteAllFrom("alias_in", "alias_out");
  }

  topicAliasIn(alias: number): string | undefined {
    if (!this.has("alias_in")) return undefined;
    const rows = this.sql.exec<{ topic: string }>(`SELECT topic FROM alias_in WHERE alias = ?`, alias).toArray();
    return rows[0]?.topic;
  }

  putTopicAliasIn(alias: number, topic: string): void {
    this.ensure("alias_in");
    this.sql.exec(`INSERT OR REPLACE INTO alias_in (alias, topic) VALUES (?, ?)`, alias, topic);
  }

  topicAliasesOut(): Map<string, number> {
    const map = new Map<string, number>();
    if (!this.has("alias_out")) return map;
    for (const r of this.sql.exec<{ topic: string; alias: number }>(`SELECT topic, alias FROM alias_out`)) {
      map.set(r.topic, r.alias);
    }
    return map;
  }

  putTopicAliasOut(topic: string, alias: number): void {
    this.ensure("alias_out");
    this.sql.exec(`INSERT OR REPLACE INTO alias_out (topic, alias) VALUES (?, ?)`, topic, alias);
  }

  // --- inbound QoS 2 (PUBREC sent, awaiting PUBREL) ---------------------------------------

  inboundQos2(packetId: number): { msgId: string; routed: boolean } | undefined {
    if (!this.has("inq2")) return undefined;
    const rows = this.sql
      .exec<{ msg_id: string; routed: number }>(`SELECT msg_id, routed FROM inq2 WHERE packet_id = ?`, packetId)
      .toArray();
    return rows.length ? { msgId: rows[0].msg_id, routed: rows[0].routed === 1 } : undefined;
  }

  private inboundIds(): Set<number> {
    if (!this.inboundQos2Ids) {
      if (!this.has("inq2")) return (this.inboundQos2Ids = new Set());
      this.inboundQos2Ids = new Set(this.sql.exec<{ packet_id: number }>(`SELECT packet_id FROM inq2`).toArray().map((r) => r.packet_id));
    }
    return this.inboundQos2Ids;
  }

  /** How many inbound QoS 2 messages await PUBREL (counted in memory: checked on every QoS 1/2 PUBLISH). */
  inboundQos2Count(): number {
    return this.inboundIds().size;
  }

  putInboundQos2(packetId: number, msgId: string, routed: boolean): void {
    this.ensure("inq2");
    this.sql.exec(`INSERT OR REPLACE INTO inq2 (packet_id, msg_id, routed) VALUES (?, ?, ?)`, packetId, msgId, routed ? 1 : 0);
    this.inboundIds().add(packetId);
  }

  /** Marks an inbound QoS 2 message routed, if its row is still there with this message id. */
  markInboundQos2Routed(packetId: number, msgId: string): void {
    if (!this.has("inq2")) return;
    this.sql.exec(`UPDATE inq2 SET routed = 1 WHERE packet_id = ? AND msg_id = ? AND routed = 0`, packetId, msgId);
  }

  deleteInboundQos2(packetId: number): boolean {
    if (!this.has("inq2")) return false;
    const deleted = this.sql.exec(`DELETE FROM inq2 WHERE packet_id = ?`, packetId).rowsWritten > 0;
    this.inboundIds().delete(packetId);
    return deleted;
  }
}

function rowToOutbound(r: Record<string, SqlStorageValue>): OutboundRow {
  const message: RoutedMessage = {
    id: r.msg_id as string,
    origin: r.origin as string,
    topic: r.topic as string,
    payload: r.payload ? new Uint8Array(r.payload as ArrayBuffer) : new Uint8Array(0),
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

/** Schema upgrade for objects created by an older version: add a column when it is missing. */
function addColumnIfMissing(sql: SqlStorage, table: string, column: string, type: string): void {
  const columns = sql.exec<{ name: string }>(`PRAGMA table_info(${table})`).toArray();
  if (!columns.some((c) => c.name === column)) sql.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}
