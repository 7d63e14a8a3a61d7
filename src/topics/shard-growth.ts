/**
 * Growing SHARD_COUNT on a live deployment (docs/SHARDS.md): one shard's side of it, on its SQLite.
 *
 * The count grows from P (SHARD_COUNT_PREVIOUS) to M = k x P. Each old shard p keeps its rows and
 * becomes the parent of the new shards p + P, p + 2P, ... (shard-rule.ts): the keys they own under
 * M were all p's. A new shard, before it handles any call, adopts: it copies from its parent, page
 * by page, every filter registered in every shard and the literal filters and retained topics it now
 * owns, then records that it is adopted, then tells its parent, who deletes what moved. Until then the
 * parent keeps those rows but serves, counts and lists only what it owns under M.
 *
 * The `layout` row (one per shard) says under which count the shard's rows are complete:
 *   no row      - a shard that predates any growth: it holds exactly its keys under P;
 *   count = P   - a parent some of whose children have not taken their keys yet (`released` lists
 *                 those that have);
 *   count = M   - a shard holding exactly its keys under M.
 * A row whose count is not P nor M (a shrink, a growth by no multiple, or SHARD_COUNT_PREVIOUS
 * changed before the last growth finished) makes the shard refuse every call: re-hashing silently
 * would lose subscriptions and retained messages.
 */
import type { BrokerConfig } from "../config";
import { childShards, holdsFilter, isGrownShard, parentShard, shardForTopic } from "./shard-rule";

/** The tables a parent hands over. */
export type MovedTable = "subs" | "retained";
export const MOVED_TABLES: readonly MovedTable[] = ["subs", "retained"];

/** One page of a parent's rows for a child: the rows, and where the next page starts (null: none). */
export interface AdoptionPage {
  rows: Record<string, SqlStorageValue>[];
  next: string | null;
}

/** Most rows a parent scans for one page, and most it returns (an RPC message has a size limit). */
export const ADOPTION_SCAN_ROWS = 2000;
export const ADOPTION_PAGE_ROWS = 256;
/** Payload bytes after which a page of retained messages ends (one larger row still travels alone). */
export const ADOPTION_PAGE_BYTES = 1 << 20;

/** The cursor of each table: rows are paged in the order of their primary key. */
const CURSOR: Record<
  MovedTable,
  { order: string; after: string; key: (r: Record<string, SqlStorageValue>) => string }
> = {
  subs: {
    order: "client_id, filter",
    after: "(client_id, filter) > (?, ?)",
    key: (r) => JSON.stringify([r.client_id, r.filter]),
  },
  retained: { order: "topic", after: "topic > ?", key: (r) => JSON.stringify([r.topic]) },
};

/** The shard cannot serve under this configuration (see the header); every call is refused with it. */
export class ShardLayoutError extends Error {}

export class ShardGrowth {
  /** The count under which this shard's rows are complete (see the header). */
  private complete: number;

  constructor(
    private readonly sql: SqlStorage,
    /** This shard's index (its Durable Object name). */
    readonly index: number,
    private readonly config: Pick<BrokerConfig, "shardCount" | "shardCountPrevious" | "shardLevels">,
  ) {
    // Read without creating it: a deployment that never grows writes no row for this.
    const row = this.tableExists("layout")
      ? sql.exec<{ count: number }>(`SELECT count FROM layout`).toArray()[0]
      : undefined;
    const { shardCount: count, shardCountPrevious: previous } = config;
    // A new shard has nothing until it adopted; an old one without a row holds its keys under P.
    this.complete = row?.count ?? (isGrownShard(index, previous) ? 0 : previous);
    if (this.complete !== 0 && this.complete !== count && this.complete !== previous) {
      throw new ShardLayoutError(
        `shard ${index} holds the keys of SHARD_COUNT ${this.complete}, which SHARD_COUNT ${count} with ` +
          `SHARD_COUNT_PREVIOUS ${previous} cannot follow: set SHARD_COUNT_PREVIOUS to ${this.complete} and ` +
          `SHARD_COUNT to a multiple of it (shards cannot be removed)`,
      );
    }
    // A parent remembers that a growth started, so that SHARD_COUNT_PREVIOUS cannot be dropped early unseen.
    if (!row && this.complete === previous && previous !== count) this.record(previous);
  }

  /** A new shard that has not adopted its keys yet: it must, before it handles any call. */
  get mustAdopt(): boolean {
    return this.complete === 0;
  }

  /** The shard may hold rows it no longer owns (a parent before all its children took theirs). */
  get holdsMoved(): boolean {
    return this.complete !== this.config.shardCount;
  }

  /** Whether the last growth added this shard (it has a parent). */
  get grown(): boolean {
    return isGrownShard(this.index, this.config.shardCountPrevious);
  }

  /** The shard a new shard adopts from. */
  get parent(): number {
    return parentShard(this.index, this.config.shardCountPrevious);
  }

  /** Children that have not taken their keys yet (a parent's; none once its rows are complete). */
  pendingChildren(): number[] {
    if (!this.holdsMoved || this.mustAdopt) return [];
    const released = new Set(this.released());
    return childShards(this.index, this.config.shardCountPrevious, this.config.shardCount).filter(
      (child) => !released.has(child),
    );
  }

  /** Whether this shard owns a topic under the current count. */
  ownsTopic(topic: string): boolean {
    return shardForTopic(topic, this.config.shardCount, this.config.shardLevels) === this.index;
  }

  /** Whether this shard holds a filter's row under the current count. */
  holdsFilter(filter: string): boolean {
    return holdsFilter(filter, this.index, this.config.shardCount, this.config.shardLevels);
  }

  // --- the child's side ----------------------------------------------------------------------

  /** Forgets what an adoption cut short had copied: it restarts from scratch (nothing else ran since). */
  beginAdoption(): void {
    for (const table of MOVED_TABLES) this.sql.exec(`DELETE FROM ${table}`);
  }

  /** Writes one page of the parent's rows (an upsert: a page copied twice is copied once). */
  importRows(table: MovedTable, rows: Record<string, SqlStorageValue>[]): void {
    for (const row of rows) {
      const columns = Object.keys(row);
      this.sql.exec(
        `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`,
        ...columns.map((c) => row[c] ?? null),
      );
    }
  }

  /** Every page is written: from now on the shard serves, and its rows are complete under M. */
  adopted(): void {
    this.record(this.config.shardCount);
  }

  // --- the parent's side ---------------------------------------------------------------------

  /** The next page of `table`'s rows that `child` holds under M, after the cursor `after`. */
  page(table: MovedTable, child: number, after: string | null): AdoptionPage {
    const cursor = CURSOR[table];
    const scanned = this.sql
      .exec<Record<string, SqlStorageValue>>(
        `SELECT * FROM ${table} ${after === null ? "" : `WHERE ${cursor.after}`} ORDER BY ${cursor.order} LIMIT ?`,
        ...(after === null ? [] : (JSON.parse(after) as SqlStorageValue[])),
        ADOPTION_SCAN_ROWS,
      )
      .toArray();
    const rows: Record<string, SqlStorageValue>[] = [];
    let bytes = 0;
    for (const row of scanned) {
      const moves =
        table === "subs"
          ? holdsFilter(row.filter as string, child, this.config.shardCount, this.config.shardLevels)
          : shardForTopic(row.topic as string, this.config.shardCount, this.config.shardLevels) === child;
      if (moves) {
        rows.push(row);
        bytes += row.payload instanceof ArrayBuffer ? row.payload.byteLength : 0;
      }
      if (rows.length >= ADOPTION_PAGE_ROWS || bytes >= ADOPTION_PAGE_BYTES) {
        return { rows, next: row === scanned.at(-1) && scanned.length < ADOPTION_SCAN_ROWS ? null : cursor.key(row) };
      }
    }
    const last = scanned.at(-1);
    return { rows, next: last && scanned.length === ADOPTION_SCAN_ROWS ? cursor.key(last) : null };
  }

  /**
   * A child has its keys, durably: the literal filters and retained topics it owns are deleted here
   * (filters registered in every shard stay). Returns the filters deleted, per client, for the trie.
   * Once every child has taken its keys, the shard's rows are complete under M.
   */
  release(child: number): { clientId: string; filter: string }[] {
    const { shardCount: count, shardLevels: levels } = this.config;
    const filters = this.sql
      .exec<{ client_id: string; filter: string }>(`SELECT client_id, filter FROM subs`)
      .toArray()
      .filter((r) => !holdsFilter(r.filter, this.index, count, levels) && holdsFilter(r.filter, child, count, levels))
      .map((r) => ({ clientId: r.client_id, filter: r.filter }));
    for (const { clientId, filter } of filters) {
      this.sql.exec(`DELETE FROM subs WHERE client_id = ? AND filter = ?`, clientId, filter);
    }
    for (const { topic } of this.sql.exec<{ topic: string }>(`SELECT topic FROM retained`).toArray()) {
      if (shardForTopic(topic, count, levels) === child) this.sql.exec(`DELETE FROM retained WHERE topic = ?`, topic);
    }
    this.sql.exec(`CREATE TABLE IF NOT EXISTS layout_released (child INTEGER PRIMARY KEY)`);
    this.sql.exec(`INSERT OR IGNORE INTO layout_released (child) VALUES (?)`, child);
    if (this.pendingChildren().length === 0) {
      this.record(count);
      this.sql.exec(`DROP TABLE layout_released`);
    }
    return filters;
  }

  private released(): number[] {
    if (!this.tableExists("layout_released")) return [];
    return this.sql
      .exec<{ child: number }>(`SELECT child FROM layout_released`)
      .toArray()
      .map((r) => r.child);
  }

  private tableExists(name: string): boolean {
    return this.sql.exec(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`, name).toArray().length > 0;
  }

  private record(count: number): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS layout (id INTEGER PRIMARY KEY CHECK (id = 0), count INTEGER)`);
    this.sql.exec(`INSERT OR REPLACE INTO layout (id, count) VALUES (0, ?)`, count);
    this.complete = count;
  }
}
