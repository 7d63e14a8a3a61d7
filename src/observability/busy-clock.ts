/**
 * How long an object had work in progress: the wall time during which at least one piece of tracked
 * work (an incoming event, an outgoing call it waits for) had not finished. Overlapping work counts
 * once. Durable Objects bill duration while an object runs or cannot hibernate; this sees only the
 * work it is given, not pending timers nor a wake from hibernation (docs/COST.md says what that leaves
 * out). Pure: the clock and where the time goes are given.
 */
export class BusyClock {
  /** Pieces of work begun and not finished. */
  private open = 0;
  /** When the current busy stretch began (meaningful while `open` > 0). */
  private since = 0;

  constructor(
    private readonly now: () => number,
    /** Receives each busy stretch's length (ms) when it ends. */
    private readonly spent: (ms: number) => void,
  ) {}

  /** Begins a piece of work; the function returned ends it (calling it again does nothing). */
  begin(): () => void {
    if (this.open++ === 0) this.since = this.now();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.open === 0) this.spent(this.now() - this.since);
    };
  }

  /** The object is busy until `work` settles; returns it unchanged. */
  track<T>(work: Promise<T>): Promise<T> {
    const end = this.begin();
    work.then(end, end);
    return work;
  }
}
