/**
 * At most a set number of calls in flight at once; the rest wait in memory and start in the order
 * they were made, each as soon as an earlier one settles.
 *
 * Why: a TopicShard delivering one publish to thousands of offline sessions would otherwise wake
 * them all at once, each Session object with its own SQLite database. Under one local workerd about
 * 2,000 of them open at once failed with `SQLITE_NOMEM` (docs/PERFORMANCE.md, "10,000 sessions").
 * Starting the calls in arrival order keeps each destination's calls in the order they were made
 * (the caller numbers a call when it starts it: util/ordered-calls.ts) [MQTT-4.6.0-6].
 */

/** Why a call was refused at once: `maxWaiting` calls were already waiting. */
export class CallLimitFull extends Error {
  constructor(maxWaiting: number) {
    super(`${maxWaiting} calls already waiting for room`);
    this.name = "CallLimitFull";
  }
}

export class CallLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    /** Calls in flight at once. */
    private readonly limit: number,
    /** Calls waiting at once; one beyond it is refused (CallLimitFull) without being started. */
    private readonly maxWaiting: number,
    /** Told each time a call starts, with the number now in flight (counters). */
    private readonly onStart: (inFlight: number, waited: boolean) => void = () => {},
  ) {}

  /** Calls in flight now. */
  get inFlight(): number {
    return this.running;
  }

  /** Calls waiting for room now. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `call` now if there is room, else once the calls made before it have started and one has settled. */
  run<R>(call: () => Promise<R>): Promise<R> {
    if (this.running < this.limit && this.waiting.length === 0) return this.start(call, false);
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(new CallLimitFull(this.maxWaiting));
    return new Promise<R>((resolve, reject) => {
      this.waiting.push(() => this.start(call, true).then(resolve, reject));
    });
  }

  private start<R>(call: () => Promise<R>, waited: boolean): Promise<R> {
    this.running++;
    this.onStart(this.running, waited);
    let result: Promise<R>;
    try {
      result = call();
    } catch (err) {
      result = Promise.reject(err);
    }
    const settled = () => {
      this.running--;
      this.waiting.shift()?.();
    };
    return result.then(
      (value) => {
        settled();
        return value;
      },
      (err: unknown) => {
        settled();
        throw err;
      },
    );
  }
}
