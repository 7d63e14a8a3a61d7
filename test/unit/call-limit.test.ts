import { describe, expect, it } from "vitest";
import { CallLimit, CallLimitFull } from "../../src/util/call-limit";

/** A call that settles when the test says. */
function deferred() {
  let resolve!: (v: string) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<string>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const flush = () => new Promise((r) => setTimeout(r, 0));

describe("CallLimit", () => {
  it("keeps at most `limit` calls in flight and starts the others in the order they were made", async () => {
    const limit = new CallLimit(2, 10);
    const calls = Array.from({ length: 5 }, () => deferred());
    const started: number[] = [];
    const results = calls.map((d, i) =>
      limit.run(() => {
        started.push(i);
        return d.promise;
      }),
    );
    const firstFailed = expect(results[0]).rejects.toThrow("a failed");
    expect(started).toEqual([0, 1]);
    expect([limit.inFlight, limit.queued]).toEqual([2, 3]);
    calls[1]!.resolve("b");
    await flush();
    expect(started).toEqual([0, 1, 2]);
    calls[0]!.reject(new Error("a failed")); // a failed call frees its room too
    await flush();
    expect(started).toEqual([0, 1, 2, 3]);
    calls.slice(2).forEach((d, i) => d.resolve(String(i)));
    await flush();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    await firstFailed;
    expect(await Promise.all(results.slice(1))).toEqual(["b", "0", "1", "2"]);
    expect([limit.inFlight, limit.queued]).toEqual([0, 0]);
  });

  it("a new call waits behind calls already waiting, even when room has just been made", async () => {
    const limit = new CallLimit(1, 10);
    const first = deferred();
    const order: string[] = [];
    void limit.run(() => first.promise);
    void limit.run(async () => void order.push("waiting"));
    first.resolve("done");
    void limit.run(async () => void order.push("new"));
    await flush();
    expect(order).toEqual(["waiting", "new"]);
  });

  it("refuses a call at once when `maxWaiting` calls wait, without starting it", async () => {
    const limit = new CallLimit(1, 2);
    let startedLate = false;
    void limit.run(() => deferred().promise);
    void limit.run(() => deferred().promise);
    void limit.run(() => deferred().promise);
    await expect(limit.run(async () => void (startedLate = true))).rejects.toBeInstanceOf(CallLimitFull);
    expect(startedLate).toBe(false);
    expect([limit.inFlight, limit.queued]).toEqual([1, 2]);
  });

  it("a call that throws before returning a promise fails alone and frees its room", async () => {
    const limit = new CallLimit(1, 10);
    await expect(
      limit.run(() => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    expect(await limit.run(async () => "next")).toBe("next");
  });

  it("tells each start with the count in flight and whether it waited", async () => {
    const seen: [number, boolean][] = [];
    const limit = new CallLimit(2, 10, (n, waited) => seen.push([n, waited]));
    const a = deferred();
    void limit.run(() => a.promise);
    void limit.run(() => deferred().promise);
    void limit.run(() => deferred().promise);
    a.resolve("a");
    await flush();
    expect(seen).toEqual([
      [1, false],
      [2, false],
      [2, true],
    ]);
  });
});
