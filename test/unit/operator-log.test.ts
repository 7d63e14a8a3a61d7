/** The operator log's line format and sampling, and the configuration check (pure code). */
import { afterEach, describe, expect, it, vi } from "vitest";
import { applyLogLevel, logEvent, logLine, SampledLog } from "../../src/observability/log";
import { configProblems } from "../../src/config-check";
import { closeReasonText, endCause, SENT_CLOSE_REASON_CHARS, withFramesSent } from "../../src/protocol/internal-close";
import { InternalClose } from "../../src/protocol/constants";

afterEach(() => {
  applyLogLevel("info");
  vi.restoreAllMocks();
});

describe("logLine", () => {
  it("is one line of JSON whatever a client string holds, cut at 200 characters", () => {
    const hostile = `a\nb\r\u2028\u2029\u202e\u0085\u007f"\\${"x".repeat(300)}`;
    const line = logLine("info", "connection.accepted", { clientId: hostile, missing: undefined });
    expect(line).not.toMatch(/[\n\r\u2028\u2029\u202e\u0085\u007f]/);
    const parsed = JSON.parse(line);
    expect(parsed).toEqual({ level: "info", event: "connection.accepted", clientId: `${hostile.slice(0, 200)}…` });
  });
});

describe("LOG_LEVEL", () => {
  it("writes only events at or above the level", () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    applyLogLevel("warn");
    logEvent("info", "connection.accepted");
    logEvent("warn", "connection.refused");
    expect(log).not.toHaveBeenCalled();
    expect(warn).toHaveBeenCalledTimes(1);
  });
});

describe("SampledLog", () => {
  it("writes at most one line per interval, with the occurrences since the last", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const sampled = new SampledLog("warn", "queue.full", 10_000);
    for (let t = 0; t < 25_000; t += 100) sampled.record(t, { clientId: "c" });
    expect(warn.mock.calls.map(([line]) => JSON.parse(String(line)).occurrences)).toEqual([1, 100, 100]);
  });
});

describe("configProblems", () => {
  it("names every bad variable at once, and none of a good configuration", () => {
    expect(configProblems({ MAX_PACKET_SIZE: "262144", ALLOW_ANONYMOUS: "true", LOG_LEVEL: "debug" })).toEqual([]);
    const problems = configProblems({
      MAX_PACKET_SIZE: "abc",
      MAX_INFLIGHT: "0",
      ALLOW_ANONYMOUS: "ture",
      AUTH_USERS: '{"carol": "plain-text-password"}',
      AUTH_HOOK_URL: "ftp://example.com",
      AUTH_HOOK_TIMEOUT_MS: "soon",
      ACL: "[1]",
      ACL_DEFAULT: "maybe",
      LOG_LEVEL: "loud",
      CONNECT_RATE_LIMIT: "of",
    });
    expect(problems.map((p) => p.variable)).toEqual([
      "MAX_PACKET_SIZE",
      "MAX_INFLIGHT",
      "ALLOW_ANONYMOUS",
      "AUTH_USERS",
      "AUTH_HOOK_URL",
      "AUTH_HOOK_TIMEOUT_MS",
      "ACL",
      "ACL_DEFAULT",
      "CONNECT_RATE_LIMIT",
      "LOG_LEVEL",
    ]);
    for (const { variable, problem } of problems) expect(problem).toContain(variable);
  });
});

describe("the internal close reason", () => {
  it("carries the v5 reason code and reason from the gateway to the session's log", () => {
    expect(endCause(InternalClose.GATEWAY_ABORT, closeReasonText("keep alive timeout", 0x8d))).toEqual({
      reason: "keep alive timeout",
      code: "0x8d",
    });
    expect(endCause(InternalClose.GATEWAY_ABORT, closeReasonText("CONNECT not received in time"))).toEqual({
      reason: "CONNECT not received in time",
    });
    expect(endCause(InternalClose.CLIENT_GONE, "client closed").reason).toMatch(/^network: /);
    expect(new TextEncoder().encode(closeReasonText("é".repeat(200), 0x81)).length).toBeLessThanOrEqual(123);
  });

  it("carries how many frames the gateway sent, whole even when the reason is cut to fit", () => {
    const closing = withFramesSent(closeReasonText("keep alive timeout", 0x8d), 12);
    expect(endCause(InternalClose.GATEWAY_ABORT, closing)).toEqual({
      reason: "keep alive timeout",
      code: "0x8d",
      framesSent: 12,
    });
    expect(endCause(InternalClose.CLIENT_GONE, withFramesSent("client closed", 0)).framesSent).toBe(0);
    const long = withFramesSent(closeReasonText("é".repeat(200), 0x81), 4294967295);
    // the sockets' close calls keep 120 characters: the count must be within them
    expect(new TextEncoder().encode(long).length).toBeLessThanOrEqual(SENT_CLOSE_REASON_CHARS);
    expect(SENT_CLOSE_REASON_CHARS).toBeLessThanOrEqual(123); // what a close frame carries
    expect(endCause(InternalClose.GATEWAY_ABORT, long).framesSent).toBe(4294967295);
    // a reason without the count (an older gateway) still reads
    expect(endCause(1000, "session closed")).toEqual({ reason: "session closed" });
  });
});
