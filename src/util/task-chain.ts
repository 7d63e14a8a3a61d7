/**
 * Runs asynchronous tasks one at a time, in the order they were added. A task starts when the one
 * before it has settled, whether it succeeded or failed: one failure does not stop those behind it.
 */
export class TaskChain {
  /** The last task added (its promise); the next one starts when it settles. */
  private tail: Promise<unknown> = Promise.resolve();

  /** Adds `task`; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result;
    return result;
  }
}
