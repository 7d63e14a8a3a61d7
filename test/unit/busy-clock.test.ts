// An object's busy wall time (src/observability/busy-clock.ts): the measure of billed duration.
import { describe, expect, it } from "vitest";
import { BusyClock } from "../../src/observability/busy-clock";

function clockAt(start: number) {
  const clock = { t: start, stretches: [] as number[] };
  const busy = new BusyClock(
    () => clock.t,
    (ms) => clock.stretches.push(ms),
  );
  return { clock, busy };
}

describe("an object's busy time", () => {
  it("counts overlapping work once, from the first begun to the last finished", () => {
    const { clock, busy } = clockAt(1000);
    const a = busy.begin();
    clock.t = 1010;
    const b = busy.begin();
    clock.t = 1030;
    a();
    expect(clock.stretches).toEqual([]); // b still runs
    clock.t = 1045;
    b();
    expect(clock.stretches).toEqual([45]);
  });

  it("does not count idle time between stretches, and ends a piece of work once", () => {
    const { clock, busy } = clockAt(0);
    const a = busy.begin();
    clock.t = 5;
    a();
    a(); // again: nothing
    clock.t = 100;
    const b = busy.begin();
    clock.t = 120;
    b();
    expect(clock.stretches).toEqual([5, 20]);
  });

  it("tracks a promise until it settles, fulfilled or rejected, and returns it unchanged", async () => {
    const { clock, busy } = clockAt(0);
    let fail!: (err: Error) => void;
    const failing = new Promise<number>((_, reject) => (fail = reject));
    const tracked = busy.track(failing);
    expect(tracked).toBe(failing);
    clock.t = 7;
    fail(new Error("shard gone"));
    await expect(tracked).rejects.toThrow("shard gone");
    expect(clock.stretches).toEqual([7]);
  });
});
