/**
 * A `republish` action's topic template, e.g. `alerts/${topic[1]}/temperature` (docs/RULES.md).
 * A substituted value is a client string, hostile like any other: one that could change the topic's
 * shape (empty, or holding `/`, `+`, `#` or U+0000) is never substituted, and the action is not taken.
 */
import { topicNameError, type TopicLimits } from "../protocol/topic";
import { compilePath, resolveCompiledPath, WhereError, type WhereInput } from "./where";

type Part = string | ReturnType<typeof compilePath>;

export interface TopicTemplate {
  readonly source: string;
  readonly parts: readonly Part[];
}

/** Characters that would add a level, a wildcard or an invalid character to the topic. */
const SHAPE_CHANGING = /[/+#\u0000]/;

/** Compiles a template; throws WhereError when it is malformed or can never make a valid topic. */
export function compileTemplate(source: string): TopicTemplate {
  if (typeof source !== "string" || source.length === 0) throw new WhereError("must be a non-empty string");
  // Never a broker-only or other reserved `$` topic [MQTT-4.7.2-1]: a rule writes like a client.
  if (source.startsWith("$") && !source.startsWith("${")) throw new WhereError("must not start with $");
  const parts: Part[] = [];
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf("${", i);
    if (open < 0) {
      parts.push(source.slice(i));
      break;
    }
    if (open > i) parts.push(source.slice(i, open));
    const close = source.indexOf("}", open);
    if (close < 0) throw new WhereError(`unclosed \${ at ${open}`);
    const path = compilePath(source.slice(open + 2, close));
    parts.push(path);
    i = close + 1;
  }
  for (const part of parts) {
    if (typeof part === "string" && (part.includes("+") || part.includes("#"))) {
      throw new WhereError("a topic name has no wildcards [MQTT-3.3.2-2]");
    }
  }
  return { source, parts };
}

export type Rendered = { topic: string } | { problem: string };

/** The topic for one message, or why there is none (a value missing or unsafe, or an invalid topic). */
export function renderTemplate(template: TopicTemplate, input: WhereInput, limits: TopicLimits): Rendered {
  let topic = "";
  for (const part of template.parts) {
    if (typeof part === "string") {
      topic += part;
      continue;
    }
    const value = resolveCompiledPath(part, input);
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      return { problem: "a substituted value is missing or not a string, number or boolean" };
    }
    const text = String(value);
    if (text === "" || SHAPE_CHANGING.test(text))
      return { problem: "a substituted value would change the topic's shape" };
    topic += text;
  }
  if (topic.startsWith("$")) return { problem: "the topic would start with $" };
  const invalid = topicNameError(topic, limits);
  return invalid ? { problem: `the topic would be invalid (${invalid})` } : { topic };
}
