/**
 * A registry object's one alarm, shared by two jobs: writing its counters (Totals, due 5 s after
 * the first unwritten increment) and, in registry 0, the `$SYS` publisher, which runs every
 * SYS_INTERVAL_SECONDS from a `$SYS` subscription until a run matches nobody. Whether the publisher
 * runs is kept (one KV key), so it resumes after a restart.
 */
import { counters } from "../observability/counters";

/** Key (synchronous KV) marking that this registry runs the `$SYS` publisher, so it resumes after a restart. */
const SYS_WATCHED = "sysWatched";

/** What the alarm needs of the object's storage. */
export type AlarmStorage = Pick<DurableObjectStorage, "kv" | "setAlarm">;

export class RegistryAlarm {
  /** When the `$SYS` publisher runs next (undefined: it is stopped). */
  private sysAt: number | undefined;
  /** The alarm this instance has set and not yet seen fire. */
  private alarmAt: number | undefined;

  constructor(
    private readonly storage: AlarmStorage,
    /** When the counters are due to be written (undefined: everything is written). */
    private readonly totalsDueAt: () => number | undefined,
    private readonly now: () => number = Date.now,
  ) {
    // Restarted while publishing: the alarm set before the restart (still pending) runs it.
    if (storage.kv.get(SYS_WATCHED)) this.sysAt = now();
  }

  /**
   * Sets the alarm to the earlier of the two jobs' times, never later than one already set
   * (the alarm's run sets the next).
   */
  schedule(): void {
    const flushAt = this.totalsDueAt();
    const next = Math.min(flushAt ?? Infinity, this.sysAt ?? Infinity);
    if (next === Infinity || (this.alarmAt !== undefined && this.alarmAt <= next)) return;
    this.alarmAt = next;
    // setAlarm is billed as a row written: the counters' fixed cost, or the publisher's.
    if (next === flushAt) counters.metricsRowsWritten++;
    else counters.alarmWrites++;
    void this.storage.setAlarm(next);
  }

  /** A `$SYS` subscription was made: the publisher starts now, unless it is running. */
  startSys(): void {
    if (this.sysAt !== undefined) return;
    this.setSysAt(this.now());
    this.schedule();
  }

  /** The alarm fired; whether the `$SYS` publisher is due in this run. */
  fired(): boolean {
    this.alarmAt = undefined;
    return this.sysAt !== undefined && this.sysAt <= this.now();
  }

  /** After a `$SYS` run: the next one `intervalMs` later while it matched anyone, else stopped. */
  sysRan(matched: number, intervalMs: number): void {
    this.setSysAt(matched > 0 ? this.now() + intervalMs : undefined);
  }

  /** Moves the publisher's next run; starting or stopping it is written (one row each). */
  private setSysAt(at: number | undefined): void {
    if ((at === undefined) !== (this.sysAt === undefined)) {
      counters.sqlRowsWritten++;
      if (at === undefined) this.storage.kv.delete(SYS_WATCHED);
      else this.storage.kv.put(SYS_WATCHED, 1);
    }
    this.sysAt = at;
  }
}
