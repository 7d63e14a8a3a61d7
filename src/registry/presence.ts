/**
 * Which clients are connected now (the admin API's list), in one registry shard: changes are kept
 * in memory and written together with the shard's metrics counters (`Totals`, FLUSH_AFTER_MS after
 * the first unwritten change), and before anything reads the table. Every presence change also
 * counts a connect or a disconnect, so the counters' alarm is always due when presence is.
 *
 * Why: rows written are billed. A client that connects and leaves within the interval (a web page
 * opened and closed, a clean session's short visit, a reconnect after a deploy that is dropped
 * again) costs no row at all instead of two; a client that stays costs one row in and one out, as
 * before. What the admin API shows is unchanged: it reads after the changes are written.
 *
 * What can be lost: a restart of the registry object (deploy, crash) in the middle of connection
 * traffic loses the changes of at most the last FLUSH_AFTER_MS, like the counters: a client that
 * connected in that window is missing from the list until its next connection, one that left in it
 * is listed until its next connection ends. The pending changes are bounded by the clients of the
 * shard (one entry per client id, the latest change wins).
 */
import { counters } from "../observability/counters";
import type { PresenceRecord } from "./client-registry";

/**
 * A client's latest unwritten change: connected with this record, or gone: the row of connection
 * `goneConnId` goes, or whatever row there is when undefined (an unwritten connection came and went:
 * as the upsert and the delete it stands for would have).
 */
type Change = { record: PresenceRecord } | { goneConnId: string | undefined };

export class Presence {
  /** Unwritten changes by client id, in arrival order; the latest per client wins. */
  private readonly changes = new Map<string, Change>();

  constructor(private readonly sql: SqlStorage) {
    // WITHOUT ROWID: the key is the table, so an insert or delete is one row written, not two.
    sql.exec(
      `CREATE TABLE IF NOT EXISTS presence (client_id TEXT PRIMARY KEY, conn_id TEXT, record TEXT) WITHOUT ROWID`,
    );
  }

  connected(record: PresenceRecord): void {
    this.changes.delete(record.clientId); // keeps the map in arrival order (a Map keeps insertion order)
    this.changes.set(record.clientId, { record });
  }

  /**
   * Only the connection that is registered goes: a take-over has already replaced it. A connection
   * that was never written leaves no row behind (at flush, a DELETE that matches nothing writes none).
   */
  disconnected(clientId: string, connId: string): void {
    const change = this.changes.get(clientId);
    const unwritten = change !== undefined && "record" in change;
    if (unwritten && change.record.connId !== connId) return; // replaced before it was written
    this.changes.delete(clientId);
    this.changes.set(clientId, { goneConnId: unwritten ? undefined : connId });
  }

  /** Writes the unwritten changes (one row per client whose presence changed and stayed changed). */
  flush(): void {
    let written = 0;
    for (const [clientId, change] of this.changes) {
      if ("record" in change) {
        written += this.sql.exec(
          `INSERT INTO presence (client_id, conn_id, record) VALUES (?, ?, ?)
           ON CONFLICT (client_id) DO UPDATE SET conn_id = excluded.conn_id, record = excluded.record`,
          clientId,
          change.record.connId,
          JSON.stringify(change.record),
        ).rowsWritten;
      } else {
        const conn = change.goneConnId ?? null;
        const sql = `DELETE FROM presence WHERE client_id = ? AND (? IS NULL OR conn_id = ?)`;
        written += this.sql.exec(sql, clientId, conn, conn).rowsWritten;
      }
    }
    this.changes.clear();
    // Counted apart (counters.ts): these rows belong to connections seconds old, not to what runs now.
    counters.sqlRowsWritten -= written;
    counters.presenceRowsWritten += written;
  }

  /** One client's presence, unwritten changes included, without writing them (a look-up writes nothing). */
  get(clientId: string): PresenceRecord | undefined {
    const change = this.changes.get(clientId);
    if (change && "record" in change) return change.record;
    const row = this.sql
      .exec<{ record: string; conn_id: string }>(`SELECT record, conn_id FROM presence WHERE client_id = ?`, clientId)
      .toArray()[0];
    if (!row || (change && (change.goneConnId === undefined || change.goneConnId === row.conn_id))) return undefined;
    return JSON.parse(row.record) as PresenceRecord;
  }

  /** The table with every change written, for readers of many clients (lists, counts). */
  table(): SqlStorage {
    this.flush();
    return this.sql;
  }
}
