/**
 * Operator logs: one JSON line per event (`{"level":"info","event":"connection.accepted",...}`),
 * which Workers Logs indexes field by field and a terminal shows one event per line. `LOG_LEVEL`
 * (debug, info, warn, error; default info) sets which lines are written, per isolate.
 *
 * Fields often hold client strings (client ids, usernames, topics, reasons quoted from packets):
 * every string is cut at LOG_TEXT_MAX and every character that could forge a line or drive a
 * terminal is written as a JSON \u escape, so one event is always exactly one line.
 */
import { LOG_TEXT_MAX } from "./log-text";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let threshold = LOG_LEVELS.indexOf("info");

/** The LOG_LEVEL value's problem, or undefined when it is absent or valid. */
export function logLevelProblem(value: unknown): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (LOG_LEVELS.includes(String(value).trim().toLowerCase() as LogLevel)) return undefined;
  return `LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(String(value).slice(0, 40))}`;
}

/** Sets this isolate's level from LOG_LEVEL (an absent or invalid value leaves it at info). */
export function applyLogLevel(value: unknown): void {
  if (value === undefined || value === "" || logLevelProblem(value)) return;
  threshold = LOG_LEVELS.indexOf(String(value).trim().toLowerCase() as LogLevel);
}

export function logEnabled(level: LogLevel): boolean {
  return LOG_LEVELS.indexOf(level) >= threshold;
}

export type LogFields = Record<string, string | number | boolean | undefined>;

// Escaped in the JSON text on top of what JSON.stringify escapes (C0 controls, quote, backslash):
// DEL and C1 controls, the line and paragraph separators, and bidi overrides.
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The event as one JSON line, strings cut and unsafe characters escaped (see the header). */
export function logLine(level: LogLevel, event: string, fields: LogFields = {}): string {
  const record: Record<string, string | number | boolean> = { level, event };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    record[key] = typeof value === "string" && value.length > LOG_TEXT_MAX ? `${value.slice(0, LOG_TEXT_MAX)}…` : value;
  }
  return JSON.stringify(record).replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Writes the event when its level is enabled (console.error for errors, console.log otherwise). */
export function logEvent(level: LogLevel, event: string, fields?: LogFields): void {
  if (!logEnabled(level)) return;
  const line = logLine(level, event, fields);
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/**
 * Logs at most one line per `intervalMs` for a recurring event (rate limits, full queues), with the
 * number of occurrences since the last line: a flood of them costs one line per interval.
 */
export class SampledLog {
  private unlogged = 0;
  private lastAt = -Infinity;

  constructor(
    private readonly level: LogLevel,
    private readonly event: string,
    private readonly intervalMs = 10_000,
  ) {}

  record(now: number, fields: LogFields = {}): void {
    this.unlogged++;
    if (now - this.lastAt < this.intervalMs) return;
    logEvent(this.level, this.event, { ...fields, occurrences: this.unlogged });
    this.unlogged = 0;
    this.lastAt = now;
  }
}
