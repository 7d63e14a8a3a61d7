/**
 * The session database's tables and their one upgrade path. Rows written are billed, so:
 * - each table is created when first written (Schema.ensure): creating the whole schema up front
 *   cost ~20 rows written for every new session (a client id never seen before, e.g. every clean web
 *   client), and most sessions never need the queue, QoS 2 or alias tables;
 * - no AUTOINCREMENT (it writes sqlite_sequence on every insert), and the duplicate check by message
 *   id is a partial index over QoS 2 rows only (exactly-once needs it).
 *
 * The schema version is a column of the one `meta` row, written when `meta` is created, which is
 * before any other table (Schema.ensure): Durable Objects' SQLite refuses PRAGMA user_version.
 */

const TABLES = {
  meta: [
    `CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0), schema_version INTEGER NOT NULL,
      client_id TEXT, owner TEXT, identity TEXT, protocol_version INTEGER, expiry_interval INTEGER, conn_id TEXT,
      will_topic TEXT, will_payload BLOB, will_qos INTEGER, will_retain INTEGER, will_props TEXT, will_delay INTEGER,
      will_at INTEGER, expire_at INTEGER, client_receive_max INTEGER, client_max_packet_size INTEGER,
      client_topic_alias_max INTEGER, problem_info INTEGER, dropped_queue_full INTEGER, connected_at INTEGER,
      remote_address TEXT, queue_level INTEGER)`,
  ],
  subs: [
    `CREATE TABLE IF NOT EXISTS subs (filter TEXT PRIMARY KEY, qos INTEGER, no_local INTEGER, rap INTEGER, rh INTEGER,
      sub_id INTEGER)`,
  ],
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

export type TableName = keyof typeof TABLES;

/**
 * One step per version after the first: MIGRATIONS[n - 1] takes a database from version n to n + 1,
 * with statements for each table it changes (run only for tables that exist: a table created later
 * is created by TABLES at the current version). Version 1 is the first, so there is none yet.
 */
export type Migration = Partial<Record<TableName, readonly string[]>>;
const MIGRATIONS: readonly Migration[] = [];

/** The version TABLES creates and a database is brought to when opened. */
export const SCHEMA_VERSION = 1 + MIGRATIONS.length;

/** Which of the session's tables exist, and creating them on first write. */
export class Schema {
  /** Tables that exist in this object's database (read once per wake, without writing). */
  private readonly tables: Set<string>;
  /** The version this code writes: 1 + the number of migrations (tests pass their own). */
  private readonly target: number;

  constructor(
    readonly sql: SqlStorage,
    migrations: readonly Migration[] = MIGRATIONS,
  ) {
    this.target = 1 + migrations.length;
    const names = sql.exec<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`).toArray();
    this.tables = new Set(names.map((r) => r.name));
    if (this.has("meta")) this.migrate(migrations);
  }

  has(table: TableName): boolean {
    return this.tables.has(table);
  }

  /** Creates a table the first time something is written to it; `meta`, with the version, comes first. */
  ensure(table: TableName): void {
    if (this.tables.has(table)) return;
    if (table !== "meta") this.ensure("meta");
    for (const statement of TABLES[table]) this.sql.exec(statement);
    if (table === "meta") this.sql.exec(`INSERT INTO meta (id, schema_version) VALUES (0, ?)`, this.target);
    this.tables.add(table);
  }

  /** The version the database was written at. */
  version(): number {
    return this.sql.exec<{ v: number }>(`SELECT schema_version AS v FROM meta WHERE id = 0`).one().v;
  }

  private migrate(migrations: readonly Migration[]): void {
    const from = this.version();
    const to = this.target;
    if (from > to) throw new Error(`session database is at schema version ${from}; this code knows ${to}`);
    if (from === to) return;
    for (const step of migrations.slice(from - 1)) {
      for (const [table, statements] of Object.entries(step) as [TableName, readonly string[]][]) {
        if (this.has(table)) for (const statement of statements) this.sql.exec(statement);
      }
    }
    this.sql.exec(`UPDATE meta SET schema_version = ? WHERE id = 0`, to);
  }
}

/** What each table's SQLite class shares: the schema that knows which tables exist. */
export abstract class SqliteTable {
  constructor(protected readonly schema: Schema) {}

  protected get sql(): SqlStorage {
    return this.schema.sql;
  }
}

/** A BLOB column's bytes (NULL: none). */
export function blobBytes(value: SqlStorageValue): Uint8Array {
  return value ? new Uint8Array(value as ArrayBuffer) : new Uint8Array(0);
}
