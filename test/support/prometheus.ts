/**
 * Reads Prometheus text with a real exposition-format parser (parse-prometheus-text-format) and
 * checks what that parser lets pass: the text ends with a line feed, every family has HELP and a
 * counter or gauge TYPE, counters end in `_total`, names are valid, every sample line is one sample
 * (two lines run together would parse as fewer samples) and every value is a number.
 */
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { expect } from "vitest";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function parseExposition(text: string): PrometheusFamily[] {
  expect(text.endsWith("\n"), "the exposition ends with a line feed").toBe(true);
  const families = parsePrometheusTextFormat(text);
  const sampleLines = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
  expect(
    families.reduce((n, f) => n + f.metrics.length, 0),
    "one sample per sample line",
  ).toBe(sampleLines.length);
  expect(new Set(families.map((f) => f.name)).size, "each family once").toBe(families.length);
  for (const f of families) {
    expect(f.name).toMatch(METRIC_NAME);
    expect(f.help, `HELP of ${f.name}`).not.toBe("");
    expect(["COUNTER", "GAUGE"], `TYPE of ${f.name}`).toContain(f.type);
    if (f.type === "COUNTER") expect(f.name, "a counter's name").toMatch(/_total$/);
    expect(f.metrics.length, `samples of ${f.name}`).toBeGreaterThan(0);
    for (const s of f.metrics) {
      expect(Number.isFinite(Number(s.value)), `${f.name} value ${s.value}`).toBe(true);
      for (const name of Object.keys(s.labels ?? {})) expect(name).toMatch(LABEL_NAME);
    }
  }
  return families;
}
