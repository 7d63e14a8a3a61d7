import { describe, expect, it } from "vitest";
import { RegistryAlarm, type AlarmStorage } from "../../src/registry/registry-alarm";

/** The object's storage as the alarm uses it: a synchronous KV and the one alarm. */
function fakeStorage() {
  const kv = new Map<string, unknown>();
  const alarms: number[] = [];
  const storage = {
    kv: {
      get: (k: string) => kv.get(k),
      put: (k: string, v: unknown) => void kv.set(k, v),
      delete: (k: string) => kv.delete(k),
    },
    setAlarm: async (at: number) => void alarms.push(at),
  } as unknown as AlarmStorage;
  return { storage, kv, alarms };
}

describe("registry alarm", () => {
  it("is set to the earlier of the counters' write and the $SYS run, never moved later", () => {
    const { storage, alarms } = fakeStorage();
    let now = 1000;
    let totalsDue: number | undefined = 6000;
    const alarm = new RegistryAlarm(
      storage,
      () => totalsDue,
      () => now,
    );
    alarm.schedule();
    expect(alarms).toEqual([6000]);
    alarm.startSys(); // due now: earlier than the counters
    expect(alarms).toEqual([6000, 1000]);
    totalsDue = 500_000;
    alarm.schedule(); // later than the alarm already set: unchanged
    expect(alarms).toEqual([6000, 1000]);
    expect(alarm.fired()).toBe(true);
    now = 1001;
    alarm.sysRan(1, 10_000);
    alarm.schedule();
    expect(alarms).toEqual([6000, 1000, 11_001]);
  });

  it("keeps the $SYS publisher running across a restart until a run matches nobody", () => {
    const { storage, kv, alarms } = fakeStorage();
    const now = 1000;
    const first = new RegistryAlarm(
      storage,
      () => undefined,
      () => now,
    );
    expect(first.fired()).toBe(false); // not started
    first.startSys();
    expect(kv.size).toBe(1);
    const restarted = new RegistryAlarm(
      storage,
      () => undefined,
      () => now,
    );
    expect(restarted.fired()).toBe(true);
    restarted.sysRan(0, 10_000);
    expect(kv.size).toBe(0);
    restarted.schedule();
    expect(alarms).toEqual([1000]); // nothing more to run
    expect(
      new RegistryAlarm(
        storage,
        () => undefined,
        () => now,
      ).fired(),
    ).toBe(false);
  });
});
