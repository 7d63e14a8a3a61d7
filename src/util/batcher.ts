/**
 * Coalesces items per key into one call: items added before the flush (scheduled with `later`,
 * e.g. setTimeout 0, so that events already waiting are handled first) go out together, in order.
 * Each item's promise settles with its own result of that call. A key's batch is sent early when
 * it reaches `maxBatch` (bounded memory).
 *
 * A key may be paced (`pace`: the callee asked for a spacing between calls, util/call-pacing.ts):
 * its items then wait until that long after its previous call and go out together, so the calls to
 * it stay at or under one per spacing whatever arrives. A key not paced waits for nothing more than
 * `later`: a lone item goes at once.
 */

interface Entry<T, R> {
  items: T[];
  waiters: { resolve: (r: R) => void; reject: (e: unknown) => void }[];
  /** Waits for its own timer (a paced key), not for the common flush. */
  timed: boolean;
}

interface Pace {
  spacingMs: number;
  lastSentAt: number;
}

/** The clock a paced Batcher keeps its spacings with. */
export interface PacingClock {
  now: () => number;
  after: (ms: number, fn: () => void) => void;
}

export class Batcher<K, T, R> {
  private readonly pending = new Map<K, Entry<T, R>>();
  /** Keys whose callee asked for spacing, least recently paced first; at most `maxPaced`. */
  private readonly paced = new Map<K, Pace>();
  private scheduled = false;

  constructor(
    /** Sends one key's items; resolves with one result per item, in order. */
    private readonly send: (key: K, items: T[]) => Promise<R[]>,
    private readonly later: (fn: () => void) => void,
    private readonly maxBatch: number,
    private readonly clock?: PacingClock,
    /** Paced keys remembered; beyond this the least recently paced is forgotten (unpaced until told again). */
    private readonly maxPaced = 10000,
  ) {}

  /**
   * Keep `spacingMs` between two calls for `key` from now on (0: no spacing). Needs a clock. A batch
   * already waiting for a longer spacing goes when the shorter one allows (a callee that cooled down
   * must not leave it waiting out the old spacing).
   */
  pace(key: K, spacingMs: number): void {
    const known = this.paced.get(key);
    this.paced.delete(key);
    if (this.clock && spacingMs > 0) {
      if (!known && this.paced.size >= this.maxPaced) this.paced.delete(this.paced.keys().next().value!);
      // A key newly paced has just been called (this answer came from that call).
      this.paced.set(key, { spacingMs, lastSentAt: known?.lastSentAt ?? this.clock.now() });
    }
    const waiting = this.pending.get(key);
    if (known && waiting?.timed && !(spacingMs >= known.spacingMs)) this.schedule(key, waiting);
  }

  add(key: K, item: T): Promise<R> {
    let entry = this.pending.get(key);
    if (entry && entry.items.length >= this.maxBatch) {
      this.pending.delete(key);
      this.dispatch(key, entry); // full: goes now, ahead of the new item (even if paced)
      entry = undefined;
    }
    if (!entry) entry = this.open(key);
    entry.items.push(item);
    const result = new Promise<R>((resolve, reject) => entry!.waiters.push({ resolve, reject }));
    if (!entry.timed && !this.scheduled) {
      this.scheduled = true;
      this.later(() => this.flush());
    }
    return result;
  }

  /** A new batch for `key`: on the common flush, or, paced and called too recently, on its own timer. */
  private open(key: K): Entry<T, R> {
    const entry: Entry<T, R> = { items: [], waiters: [], timed: false };
    this.pending.set(key, entry);
    this.schedule(key, entry);
    return entry;
  }

  /** Times a batch by its key's spacing: on its own timer when called too recently, else on the common flush. */
  private schedule(key: K, entry: Entry<T, R>): void {
    const pace = this.paced.get(key);
    const wait = pace && this.clock ? pace.lastSentAt + pace.spacingMs - this.clock.now() : 0;
    if (wait > 0) {
      entry.timed = true;
      this.clock!.after(wait, () => {
        if (this.pending.get(key) !== entry) return; // went early (full, or rescheduled sooner)
        this.pending.delete(key);
        this.dispatch(key, entry);
      });
    } else if (entry.timed) {
      entry.timed = false; // joins the common flush
      if (!this.scheduled) {
        this.scheduled = true;
        this.later(() => this.flush());
      }
    }
  }

  private flush(): void {
    this.scheduled = false;
    for (const [key, entry] of [...this.pending]) {
      if (entry.timed) continue;
      this.pending.delete(key);
      this.dispatch(key, entry);
    }
  }

  private dispatch(key: K, entry: Entry<T, R>): void {
    const pace = this.paced.get(key);
    if (pace) pace.lastSentAt = this.clock!.now();
    this.send(key, entry.items).then(
      (results) => entry.waiters.forEach((w, i) => w.resolve(results[i]!)), // one result per item
      (err) => entry.waiters.forEach((w) => w.reject(err)),
    );
  }
}
