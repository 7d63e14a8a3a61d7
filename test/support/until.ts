/**
 * Waiting in tests, for every tier (no Node-only imports: the workers pool loads this too). Wait for
 * a condition, not for a time: `until` polls one, `Signal.until` re-checks one whenever the thing it
 * watches notifies. `sleep` is only for tests where time itself is the premise.
 */

/** Waits for a condition instead of a fixed time: polls `check` until it holds, or fails naming `what`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Time itself is the premise (an expiry or delay must pass): nothing to observe instead. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Wakes whoever waits on something that arrives by events (packets, messages, a close): the owner
 * calls `notify` on each event, and `until` re-checks its condition then, or at the latest every
 * 100 ms.
 */
export class Signal {
  private waiters: (() => void)[] = [];

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when `check` holds, or rejects after `ms` with the message `failure` returns then. */
  async until(check: () => boolean, ms: number, failure: () => string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(failure());
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
