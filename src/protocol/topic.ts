/** Topic names and filters: validation [MQTT-4.7], matching, and filter algebra (containment, overlap). */

export interface TopicLimits {
  maxTopicLength: number;
  maxTopicLevels: number;
}

const encoder = new TextEncoder();
/** A UTF-16 surrogate not part of a pair (with the u flag, a pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u;

/** Common checks for names and filters; returns a reason when invalid. */
function checkString(value: string, limits: TopicLimits): string | undefined {
  // [MQTT-4.7.3-1] topic names and filters must be at least one character long
  if (value.length === 0) return "empty";
  // [MQTT-4.7.3-2] must not include the null character U+0000
  if (value.includes("\u0000")) return "contains U+0000";
  // [MQTT-1.5.4-1] well-formed UTF-8. Topics from the wire are checked on their bytes
  // (packet-check.ts, connect-check.ts), where U+FFFD is an ordinary character; a string from
  // elsewhere (HTTP API, hooks) is refused if it holds a lone surrogate, which has no UTF-8 form
  if (LONE_SURROGATE.test(value)) return "ill-formed UTF-8";
  // [MQTT-4.7.3-3] at most 65535 bytes; we apply the configured, lower limit
  if (encoder.encode(value).length > limits.maxTopicLength) return "too long";
  if (countLevels(value) > limits.maxTopicLevels) return "too many levels";
  return undefined;
}

function countLevels(value: string): number {
  let levels = 1;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) === 47) levels++;
  return levels;
}

/** Validates a topic name used in PUBLISH; returns a reason when invalid. */
export function topicNameError(topic: string, limits: TopicLimits): string | undefined {
  const common = checkString(topic, limits);
  if (common) return common;
  // [MQTT-3.3.2-2] the topic name in a PUBLISH must not contain wildcard characters
  if (topic.includes("+") || topic.includes("#")) return "wildcard in topic name";
  return undefined;
}

/** Validates a topic filter used in SUBSCRIBE/UNSUBSCRIBE; returns a reason when invalid. */
export function topicFilterError(filter: string, limits: TopicLimits): string | undefined {
  const common = checkString(filter, limits);
  if (common) return common;
  const levels = filter.split("/");
  for (const [i, level] of levels.entries()) {
    // [MQTT-4.7.1-1] '#' must be alone in its level and the last level
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) return "misplaced '#'";
    // [MQTT-4.7.1-2] '+' must occupy an entire level
    if (level.includes("+") && level !== "+") return "misplaced '+'";
  }
  return undefined;
}

/**
 * `$SYS` topics carry the broker's own figures: only the broker publishes them. A client's PUBLISH,
 * will or HTTP publish to one is refused, so nobody can pass a value off as the broker's.
 * (MQTT leaves `$` topics to the server [MQTT-4.7.2]; `$SYS/` is the accepted prefix for its data.)
 */
export function isBrokerOnlyTopic(topic: string): boolean {
  return topic === "$SYS" || topic.startsWith("$SYS/");
}

/** True when the filter contains a wildcard. */
export function hasWildcard(filter: string): boolean {
  return filter.includes("+") || filter.includes("#");
}

/** The parts of a shared subscription filter `$share/{group}/{filter}`, or undefined. */
export function parseSharedFilter(filter: string): { group: string; filter: string } | undefined {
  if (!filter.startsWith("$share/")) return undefined;
  const rest = filter.slice(7);
  const slash = rest.indexOf("/");
  if (slash <= 0) return { group: slash === 0 ? "" : rest, filter: "" };
  return { group: rest.slice(0, slash), filter: rest.slice(slash + 1) };
}

/**
 * Does `topic` match `filter`? Wildcards in the first level do not match topics that begin
 * with '$' [MQTT-4.7.2-1].
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // '#' also matches the parent level [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

// --- filter algebra: containment and overlap (the ACL's grants, the shards' retained lookups) ---

/**
 * True when every topic `inner` can match is also matched by `outer` (filter containment). With
 * `reserved` (the spec), a wildcard first level does not match a topic starting with `$`
 * [MQTT-4.7.2-1]; deny rules pass false, so `#` denies `$SYS/...` too (fail closed).
 */
export function filterCovers(outer: string, inner: string, reserved = true): boolean {
  const o = outer.split("/");
  const i = inner.split("/");
  const dollar = reserved && inner.startsWith("$");
  for (let k = 0; k < o.length; k++) {
    if (o[k] === "#") return !(k === 0 && dollar);
    if (k >= i.length) return false;
    if (i[k] === "#") return false;
    if (o[k] === "+") {
      if (k === 0 && dollar) return false;
      continue;
    }
    if (o[k] !== i[k]) return false;
  }
  return o.length === i.length;
}

/** True when some topic could match both filters; `reserved` as for filterCovers. */
export function filtersOverlap(a: string, b: string, reserved = true): boolean {
  const x = a.split("/");
  const y = b.split("/");
  const [x0 = "", y0 = ""] = [x[0], y[0]];
  if (reserved && ((isWildcard(x0) && y0.startsWith("$")) || (isWildcard(y0) && x0.startsWith("$")))) return false;
  for (let k = 0; k < Math.max(x.length, y.length); k++) {
    if (x[k] === "#" || y[k] === "#") return true;
    if (x[k] === undefined || y[k] === undefined) return false;
    if (x[k] === "+" || y[k] === "+") continue;
    if (x[k] !== y[k]) return false;
  }
  return true;
}

function isWildcard(level: string): boolean {
  return level === "#" || level === "+";
}
