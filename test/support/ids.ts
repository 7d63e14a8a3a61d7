/** Ids unique to a test run, for every tier (no Node-only imports: the workers pool loads this too). */

/** Tells apart test processes that share one broker (e2e files run in separate workers), where there is a pid. */
const processTag = typeof process !== "undefined" && process.pid ? `${process.pid}-` : "";

let counter = 0;

/** A client id (or topic segment) unique to this run: `prefix-[pid-]time-n`. */
export function uid(prefix = "c"): string {
  return `${prefix}-${processTag}${Date.now().toString(36)}-${++counter}`;
}
