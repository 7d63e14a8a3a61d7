/** When a connection without CONNECT is closed: the timeout starts again while others connect (src/gateway/connect-timeout.ts). */
import { describe, expect, it } from "vitest";
import { BUSY_CONNECT_WAIT_MS, ConnectTimeout, PendingConnections } from "../../src/gateway/connect-timeout";

describe("ConnectTimeout", () => {
  it("closes a silent connection after one timeout when no other connection is pending", () => {
    expect(new ConnectTimeout(10_000, 0).startsAgain(0, 10_000)).toBe(false);
  });

  it("starts again while others are pending, until BUSY_CONNECT_WAIT_MS after the upgrade", () => {
    const timeout = new ConnectTimeout(10_000, 1_000);
    // the timeout runs out at 10 s, 20 s, ... after the upgrade; each time, 30 others are still pending
    const outcomes = [1, 2, 3, 4, 5, 6, 7].map((k) => timeout.startsAgain(30, 1_000 + k * 10_000));
    expect(BUSY_CONNECT_WAIT_MS).toBe(60_000);
    expect(outcomes).toEqual([true, true, true, true, true, false, false]);
  });

  it("closes once the others are done, with time left", () => {
    const timeout = new ConnectTimeout(1_500, 0);
    expect(timeout.startsAgain(3, 1_500)).toBe(true);
    expect(timeout.startsAgain(0, 3_000)).toBe(false);
  });

  it("gives a timeout longer than the busy wait once, as configured", () => {
    expect(new ConnectTimeout(90_000, 0).startsAgain(30, 90_000)).toBe(false);
  });
});

describe("PendingConnections", () => {
  it("counts connections from their upgrade until they are open or closed, never below zero", () => {
    const pending = new PendingConnections();
    pending.began();
    pending.began();
    expect(pending.size).toBe(2);
    pending.ended();
    expect(pending.size).toBe(1);
    pending.ended();
    pending.ended();
    expect(pending.size).toBe(0);
  });
});
