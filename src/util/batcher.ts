/**
 * Coalesces items per key into one call: items added before the flush (scheduled with `later`,
 * e.g. setTimeout 0, so that events already waiting are handled first) go out together, in order.
 * Each item's promise settles with its own result of that call. A key's batch is sent early when
 * it reaches `maxBatch` (bounded memory).
 */
export class Batcher<K, T, R> {
  private readonly pending = new Map<
    K,
    { items: T[]; waiters: { resolve: (r: R) => void; reject: (e: unknown) => void }[] }
  >();
  private scheduled = false;

  constructor(
    /** Sends one key's items; resolves with one result per item, in order. */
    private readonly send: (key: K, items: T[]) => Promise<R[]>,
    private readonly later: (fn: () => void) => void,
    private readonly maxBatch: number,
  ) {}

  add(key: K, item: T): Promise<R> {
    let entry = this.pending.get(key);
    if (entry && entry.items.length >= this.maxBatch) {
      this.pending.delete(key);
      this.dispatch(key, entry); // full: goes now, ahead of the new item
      entry = undefined;
    }
    if (!entry) {
      entry = { items: [], waiters: [] };
      this.pending.set(key, entry);
    }
    entry.items.push(item);
    const result = new Promise<R>((resolve, reject) => entry!.waiters.push({ resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      this.later(() => this.flush());
    }
    return result;
  }

  private flush(): void {
    this.scheduled = false;
    const entries = [...this.pending];
    this.pending.clear();
    for (const [key, entry] of entries) this.dispatch(key, entry);
  }

  private dispatch(
    key: K,
    entry: { items: T[]; waiters: { resolve: (r: R) => void; reject: (e: unknown) => void }[] },
  ): void {
    this.send(key, entry.items).then(
      (results) => entry.waiters.forEach((w, i) => w.resolve(results[i]!)), // one result per item
      (err) => entry.waiters.forEach((w) => w.reject(err)),
    );
  }
}
