/**
 * Named monotonic counters of one Durable Object (metrics), kept in memory and written to its
 * SQLite as ONE row FLUSH_AFTER_MS after the first increment that is not yet written: the object
 * schedules that write (`schedule`: a TopicShard's timer, a ClientRegistry's alarm, which it shares
 * with `$SYS`), so counting costs a row per object per interval (and for an alarm a row to set it and a
 * request to run it), never a row per message, and no increment waits for a next one to be written.
 *
 * What can be lost: an object becomes evictable only after 10 s without events (Cloudflare's
 * documented lifecycle), later than FLUSH_AFTER_MS, so an idle object has written every increment
 * before it goes. A restart in the middle of traffic (deploy, crash) loses the increments of at most
 * the last FLUSH_AFTER_MS; a scrape may have seen them, and then that counter falls back by that much
 * once (Prometheus reads it as a reset). test/workers/metrics-durability.test.ts restarts every object
 * after its write and checks that no counter went back.
 */
import { counters } from "./counters";

/** How long after the first unwritten increment the counters are written. */
export const FLUSH_AFTER_MS = 5000;

export class Totals {
  private readonly values = new Map<string, number>();
  /** When the unwritten increments are to be written (undefined: everything is written). */
  private dueAt: number | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly now: () => number,
    /** Asks the object to call flush() at `at` (epoch ms): a timer, or its alarm merged with any other it has. */
    private readonly schedule: (at: number) => void,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS counter_totals (id INTEGER PRIMARY KEY, counts TEXT NOT NULL)`);
    const row = sql.exec<{ counts: string }>(`SELECT counts FROM counter_totals WHERE id = 0`).toArray()[0];
    for (const [name, value] of Object.entries(row ? (JSON.parse(row.counts) as Record<string, number>) : {}))
      this.values.set(name, value);
  }

  add(name: string, n = 1): void {
    if (n === 0) return;
    this.values.set(name, (this.values.get(name) ?? 0) + n);
    if (this.dueAt !== undefined) return;
    this.dueAt = this.now() + FLUSH_AFTER_MS;
    this.schedule(this.dueAt);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  /** Every counter whose name starts with `prefix`, keyed by the rest of the name. */
  withPrefix(prefix: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, value] of this.values) if (name.startsWith(prefix)) out[name.slice(prefix.length)] = value;
    return out;
  }

  /** When flush() is due (undefined: nothing to write), for an object merging it with its other alarms. */
  get flushDueAt(): number | undefined {
    return this.dueAt;
  }

  /** Writes the unwritten increments (one row), if any. */
  flush(): void {
    if (this.dueAt === undefined) return;
    this.dueAt = undefined;
    this.write();
  }

  private write(): void {
    const written = this.sql.exec(
      `INSERT OR REPLACE INTO counter_totals (id, counts) VALUES (0, ?)`,
      JSON.stringify(Object.fromEntries(this.values)),
    ).rowsWritten;
    // Billed like any row, but a fixed cost per interval rather than per message: counted apart.
    counters.sqlRowsWritten -= written;
    counters.metricsRowsWritten += written;
  }
}
