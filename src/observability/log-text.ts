/**
 * Client-controlled strings (client ids, topics, usernames) are hostile wherever they land, logs
 * included: a topic holding a newline would forge a log line, and one holding an escape sequence
 * would drive the operator's terminal. MQTT allows control characters in UTF-8 strings
 * [MQTT-1.5.4-2 only SHOULD NOT], so they reach us; every log line shows them through `logText`.
 */

/** Longest part of a client string that goes into one log line, in UTF-16 code units. */
export const LOG_TEXT_MAX = 200;

// C0 and C1 controls, DEL, the Unicode line and paragraph separators, and bidi overrides.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The value quoted, its unsafe characters escaped as \uXXXX, cut at LOG_TEXT_MAX ("…" marks a cut). */
export function logText(value: unknown): string {
  const text = String(value);
  const cut = text.length > LOG_TEXT_MAX ? `${text.slice(0, LOG_TEXT_MAX)}…` : text;
  const escaped = cut
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return `"${escaped}"`;
}
