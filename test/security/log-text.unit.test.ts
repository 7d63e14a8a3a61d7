// Client strings in log lines: quoted, controls escaped, bounded (src/observability/log-text.ts).
import { describe, expect, it } from "vitest";
import { LOG_TEXT_MAX, logText } from "../../src/observability/log-text";

describe("logText: a client string cannot forge or colour a log line", () => {
  it("escapes line breaks, so a topic cannot start a log line of its own", () => {
    expect(logText("a\nFORGED admin login\r\n")).toBe('"a\\u000aFORGED admin login\\u000d\\u000a"');
  });

  it("escapes terminal escape sequences (C0 ESC and the C1 CSI) and DEL", () => {
    const out = logText("\u001b[31mred\u009b2J\u007f");
    expect(out).not.toMatch(/[\u001b\u009b\u007f]/);
    expect(out).toBe('"\\u001b[31mred\\u009b2J\\u007f"');
  });

  it("escapes Unicode line separators and bidi overrides, quotes and backslashes", () => {
    expect(logText('x\u2028y\u202ez"\\')).toBe('"x\\u2028y\\u202ez\\"\\\\"');
  });

  it("keeps ordinary text, including non-Latin letters, and bounds the length", () => {
    expect(logText("devices/Zürich/温度")).toBe('"devices/Zürich/温度"');
    const long = logText("x".repeat(10 * LOG_TEXT_MAX));
    expect(long.length).toBe(LOG_TEXT_MAX + 3);
    expect(long.endsWith('…"')).toBe(true);
  });
});
