/**
 * Reading elements a test expects to be there, for every tier (no Node-only imports: the workers pool
 * loads this too). Under `noUncheckedIndexedAccess` `list[i]` may be undefined; these fail at the read,
 * saying what was missing, rather than in a TypeError later or, worse, in a check that undefined passes.
 */

/** A list whose first `N` elements are known to be there (`N` a literal; a plain `number` gives `T[]`). */
export type AtLeast<T, N extends number, Known extends T[] = []> = Known["length"] extends N
  ? [...Known, ...T[]]
  : AtLeast<T, N, [...Known, T]>;

/** `list[index]`, or a failure naming `what` when the list is too short to have it. */
export function at<T>(list: ArrayLike<T>, index: number, what = "an element"): T {
  if (!Number.isInteger(index) || index < 0 || index >= list.length)
    throw new Error(`expected ${what} at index ${index}, but there are ${list.length}`);
  return list[index] as T;
}

/** `list` itself, typed for destructuring its first `n` elements, or a failure when it has fewer. */
export function atLeast<T, N extends number>(list: T[], n: N, what = "elements"): AtLeast<T, N> {
  if (list.length < n) throw new Error(`expected at least ${n} ${what}, but there are ${list.length}`);
  return list as AtLeast<T, N>;
}
