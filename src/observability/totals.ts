/**
 * Named monotonic counters of one Durable Object, kept in memory and written to its SQLite at most
 * every PERSIST_EVERY_MS (one row per counter that changed), so counting costs no row per message.
 * A restart loses at most the last interval's increments: Prometheus sees a counter that moved
 * less, never one that went backwards past a restart (rate() tolerates resets anyway).
 */
import { counters } from "./counters";

const PERSIST_EVERY_MS = 10000;

export class Totals {
  private readonly values = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private persistedAt = 0;

  constructor(
    private readonly sql: SqlStorage,
    private readonly now: () => number,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER)`);
    for (const r of sql.exec<{ name: string; value: number }>(`SELECT name, value FROM totals`)) this.values.set(r.name, r.value);
  }

  add(name: string, n = 1): void {
    if (n === 0) return;
    this.values.set(name, (this.values.get(name) ?? 0) + n);
    this.dirty.add(name);
    this.persistSoon();
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

  private persistSoon(): void {
    const now = this.now();
    if (now - this.persistedAt < PERSIST_EVERY_MS) return;
    this.persistedAt = now;
    for (const name of this.dirty) {
      const written = this.sql.exec(`INSERT OR REPLACE INTO totals (name, value) VALUES (?, ?)`, name, this.values.get(name)!).rowsWritten;
      // Billed like any row, but a fixed cost per interval rather than per message: counted apart.
      counters.sqlRowsWritten -= written;
      counters.metricsRowsWritten += written;
    }
    this.dirty.clear();
  }
}
