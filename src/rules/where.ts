/**
 * The `where` condition of a rule (docs/RULES.md): a small language over a message's topic levels,
 * QoS, retain flag, publisher, User Properties and JSON payload fields, e.g.
 * `payload.temp > 30 && topic[1] == "plant-7"`. A hand-written tokenizer and recursive-descent
 * parser (the Workers runtime forbids eval, and no maintained expression library both avoids it and
 * bounds its work). A condition is compiled once, when the configuration is checked; evaluating it
 * never throws: what is missing compares false, and work beyond the step budget makes it false.
 */

/** Limits of the language, each with its outcome (docs/RULES.md "Limits"). */
export const WHERE_LIMITS = Object.freeze({
  /** Longest condition, in characters: longer is a configuration error. */
  maxLength: 1024,
  /** Deepest nesting of parentheses and `!`, and most steps in a path: more is a configuration error. */
  maxDepth: 32,
  /** Most values one `in [...]` list holds: more is a configuration error. */
  maxListItems: 64,
  /**
   * Evaluation steps per condition and message (a node visited, an array element scanned by
   * `contains`): beyond it the condition is false for that message and the overrun is counted.
   */
  maxSteps: 1000,
});

/** A value a path or literal yields; `undefined` is "missing" (absent field, not JSON, level out of range). */
export type WhereValue = undefined | null | boolean | number | string | readonly unknown[] | object;

/** What a condition sees of a message. `json` is parsed on first use (and only when small enough). */
export interface WhereInput {
  topic: string;
  qos: number;
  retain: boolean;
  clientId: string;
  /** User Properties in wire order (v5); the first value of a repeated name is the one seen. */
  userProperties?: readonly (readonly [string, string])[];
  /** The payload as JSON, or undefined when it is not JSON or is too large to parse. */
  json(): unknown;
}

export class WhereError extends Error {}

type Step = string | number;
type Root = "topic" | "qos" | "retain" | "clientId" | "user" | "payload";
const ROOTS: readonly Root[] = ["topic", "qos", "retain", "clientId", "user", "payload"];
type Comparison = "==" | "!=" | "<" | "<=" | ">" | ">=";

type Node =
  | { k: "lit"; v: null | boolean | number | string }
  | { k: "path"; root: Root; steps: Step[] }
  | { k: "cmp"; op: Comparison; l: Node; r: Node }
  | { k: "in"; l: Node; list: (null | boolean | number | string)[] }
  | { k: "contains"; l: Node; r: Node }
  | { k: "and" | "or"; l: Node; r: Node }
  | { k: "not"; x: Node };

/** A compiled condition: evaluate it with `evaluateWhere`. */
export interface WhereCondition {
  readonly source: string;
  readonly root: Node;
}

// ---------------------------------------------------------------- tokens

type Token =
  | { t: "num"; v: number; at: number }
  | { t: "str"; v: string; at: number }
  | { t: "id"; v: string; at: number }
  | { t: "op"; v: string; at: number }
  | { t: "end"; at: number };

const OPERATORS = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "-"];
const ESCAPES: Record<string, string> = { '"': '"', "'": "'", "\\": "\\", "/": "/", n: "\n", t: "\t", r: "\r" };

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    const at = i;
    if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(source.slice(i))!;
      const v = Number(m[0]);
      if (!Number.isFinite(v)) throw new WhereError(`number out of range at ${at}`);
      tokens.push({ t: "num", v, at });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i))!;
      tokens.push({ t: "id", v: m[0], at });
      i += m[0].length;
    } else if (c === '"' || c === "'") {
      const [v, end] = readString(source, i);
      tokens.push({ t: "str", v, at });
      i = end;
    } else {
      const op = OPERATORS.find((o) => source.startsWith(o, i));
      if (!op) throw new WhereError(`unexpected character ${JSON.stringify(c)} at ${at}`);
      tokens.push({ t: "op", v: op, at });
      i += op.length;
    }
  }
  tokens.push({ t: "end", at: source.length });
  return tokens;
}

/** A quoted string from `start` (its quote): the value and the index after the closing quote. */
function readString(source: string, start: number): [string, number] {
  const quote = source[start];
  let value = "";
  let i = start + 1;
  while (i < source.length) {
    const c = source[i]!;
    if (c === quote) return [value, i + 1];
    if (c !== "\\") {
      value += c;
      i++;
      continue;
    }
    const e = source[i + 1];
    if (e === "u" && /^[0-9a-fA-F]{4}$/.test(source.slice(i + 2, i + 6))) {
      value += String.fromCharCode(parseInt(source.slice(i + 2, i + 6), 16));
      i += 6;
    } else if (e !== undefined && ESCAPES[e] !== undefined) {
      value += ESCAPES[e];
      i += 2;
    } else throw new WhereError(`bad escape in string at ${i}`);
  }
  throw new WhereError(`unterminated string at ${start}`);
}

// ---------------------------------------------------------------- parser

class Parser {
  private i = 0;
  private depth = 0;

  constructor(private readonly tokens: Token[]) {}

  parse(): Node {
    const node = this.or();
    const next = this.peek();
    if (next.t !== "end") throw new WhereError(`unexpected ${describe(next)} at ${next.at}`);
    return node;
  }

  private peek(): Token {
    return this.tokens[this.i]!;
  }

  private take(): Token {
    const token = this.tokens[this.i]!;
    if (token.t !== "end") this.i++;
    return token;
  }

  private isOp(v: string): boolean {
    const token = this.peek();
    return token.t === "op" && token.v === v;
  }

  private isWord(v: string): boolean {
    const token = this.peek();
    return token.t === "id" && token.v === v;
  }

  private expectOp(v: string): void {
    const token = this.take();
    if (token.t !== "op" || token.v !== v)
      throw new WhereError(`expected "${v}", got ${describe(token)} at ${token.at}`);
  }

  /** Each nested construct goes one level deeper; the limit keeps the parser's own recursion bounded. */
  private nested<T>(fn: () => T): T {
    if (++this.depth > WHERE_LIMITS.maxDepth) {
      throw new WhereError(`nested deeper than ${WHERE_LIMITS.maxDepth} at ${this.peek().at}`);
    }
    const result = fn();
    this.depth--;
    return result;
  }

  private or(): Node {
    return this.chain("||", "or", () => this.and());
  }

  private and(): Node {
    return this.chain("&&", "and", () => this.not());
  }

  /** `operand (op operand)*`, left-associative. */
  private chain(op: string, k: "and" | "or", operand: () => Node): Node {
    let node = operand();
    while (this.isOp(op)) {
      this.take();
      node = { k, l: node, r: operand() };
    }
    return node;
  }

  private not(): Node {
    if (!this.isOp("!")) return this.comparison();
    this.take();
    return this.nested(() => ({ k: "not", x: this.not() }));
  }

  private comparison(): Node {
    const l = this.operand();
    const token = this.peek();
    if (token.t === "op" && ["==", "!=", "<", "<=", ">", ">="].includes(token.v)) {
      this.take();
      return { k: "cmp", op: token.v as Comparison, l, r: this.operand() };
    }
    if (this.isWord("in")) {
      this.take();
      return { k: "in", l, list: this.list() };
    }
    if (this.isWord("contains")) {
      this.take();
      return { k: "contains", l, r: this.operand() };
    }
    return l;
  }

  private list(): (null | boolean | number | string)[] {
    this.expectOp("[");
    const items: (null | boolean | number | string)[] = [];
    while (!this.isOp("]")) {
      if (items.length > 0) this.expectOp(",");
      if (items.length === WHERE_LIMITS.maxListItems) {
        throw new WhereError(`a list holds at most ${WHERE_LIMITS.maxListItems} values`);
      }
      const item = this.literal();
      if (item === undefined) throw new WhereError(`a list holds literals only, got ${describe(this.peek())}`);
      items.push(item.v);
    }
    this.take();
    return items;
  }

  /** A literal at the cursor (taken), or undefined (nothing taken). */
  private literal(): { v: null | boolean | number | string } | undefined {
    const token = this.peek();
    if (token.t === "num" || token.t === "str") {
      this.take();
      return { v: token.v };
    }
    if (token.t === "id" && (token.v === "true" || token.v === "false" || token.v === "null")) {
      this.take();
      return { v: token.v === "null" ? null : token.v === "true" };
    }
    if (token.t === "op" && token.v === "-" && this.tokens[this.i + 1]?.t === "num") {
      this.take();
      return { v: -(this.take() as { v: number }).v };
    }
    return undefined;
  }

  private operand(): Node {
    if (this.isOp("(")) {
      this.take();
      const node = this.nested(() => this.or());
      this.expectOp(")");
      return node;
    }
    const literal = this.literal();
    if (literal) return { k: "lit", v: literal.v };
    const token = this.take();
    if (token.t !== "id") throw new WhereError(`expected a value, got ${describe(token)} at ${token.at}`);
    const root = ROOTS.find((r) => r === token.v);
    if (!root) throw new WhereError(`unknown name "${token.v}" at ${token.at} (one of ${ROOTS.join(", ")})`);
    return { k: "path", root, steps: this.steps() };
  }

  /** `.name` and `[index]` / `["key"]` after a root name. */
  private steps(): Step[] {
    const steps: Step[] = [];
    for (;;) {
      if (this.isOp(".")) {
        this.take();
        const name = this.take();
        if (name.t !== "id") throw new WhereError(`expected a field name after ".", got ${describe(name)}`);
        steps.push(name.v);
      } else if (this.isOp("[")) {
        this.take();
        const key = this.literal();
        if (!key || (typeof key.v !== "string" && !Number.isInteger(key.v))) {
          throw new WhereError(`expected an integer or a string in [ ] at ${this.peek().at}`);
        }
        steps.push(key.v as Step);
        this.expectOp("]");
      } else return steps;
      if (steps.length > WHERE_LIMITS.maxDepth) throw new WhereError(`a path is at most ${WHERE_LIMITS.maxDepth} deep`);
    }
  }
}

function describe(token: Token): string {
  if (token.t === "end") return "the end";
  if (token.t === "str") return "a string";
  return `"${String(token.v)}"`;
}

/** Compiles a condition; throws WhereError with what is wrong and where (a character offset). */
export function compileWhere(source: string): WhereCondition {
  if (typeof source !== "string") throw new WhereError("must be a string");
  if (source.length > WHERE_LIMITS.maxLength) throw new WhereError(`longer than ${WHERE_LIMITS.maxLength} characters`);
  const parser = new Parser(tokenize(source));
  const root = parser.parse();
  checkShape(root);
  return { source, root };
}

/** Paths whose shape can never resolve are mistakes worth reporting at configuration time. */
function checkShape(node: Node): void {
  switch (node.k) {
    case "path": {
      const { root, steps } = node;
      if (root === "topic" && (steps.length > 1 || (steps.length === 1 && typeof steps[0] !== "number"))) {
        throw new WhereError("topic takes one level index, as topic[1] (0 is the first level, -1 the last)");
      }
      if (root === "user" && (steps.length !== 1 || typeof steps[0] !== "string")) {
        throw new WhereError('user takes one property name, as user.site or user["site"]');
      }
      if ((root === "qos" || root === "retain" || root === "clientId") && steps.length > 0) {
        throw new WhereError(`${root} has no fields`);
      }
      return;
    }
    case "lit":
      return;
    case "not":
      return checkShape(node.x);
    case "in":
      return checkShape(node.l);
    default:
      checkShape(node.l);
      checkShape(node.r);
  }
}

// ---------------------------------------------------------------- evaluation

/** The step budget ran out (caught in evaluateWhere; never escapes). */
class OutOfSteps {}

export interface WhereOutcome {
  matched: boolean;
  /** The step budget ran out: the condition counted as false. */
  overrun: boolean;
  /** Evaluation threw (a bug, never by design): the condition counted as false. */
  fault: boolean;
}

/** Evaluates a compiled condition; never throws. */
export function evaluateWhere(condition: WhereCondition, input: WhereInput): WhereOutcome {
  const budget = { steps: WHERE_LIMITS.maxSteps };
  try {
    return { matched: evaluate(condition.root, input, budget) === true, overrun: false, fault: false };
  } catch (err) {
    const overrun = err instanceof OutOfSteps;
    return { matched: false, overrun, fault: !overrun };
  }
}

function spend(budget: { steps: number }, n = 1): void {
  budget.steps -= n;
  if (budget.steps < 0) throw new OutOfSteps();
}

function evaluate(node: Node, input: WhereInput, budget: { steps: number }): WhereValue {
  spend(budget);
  switch (node.k) {
    case "lit":
      return node.v;
    case "path":
      return resolve(node.root, node.steps, input);
    case "not":
      return evaluate(node.x, input, budget) !== true;
    case "and":
      return evaluate(node.l, input, budget) === true && evaluate(node.r, input, budget) === true;
    case "or":
      return evaluate(node.l, input, budget) === true || evaluate(node.r, input, budget) === true;
    case "cmp":
      return compare(node.op, evaluate(node.l, input, budget), evaluate(node.r, input, budget));
    case "in": {
      const value = evaluate(node.l, input, budget);
      spend(budget, node.list.length);
      return isScalar(value) && node.list.includes(value);
    }
    case "contains":
      return contains(evaluate(node.l, input, budget), evaluate(node.r, input, budget), budget);
  }
}

function isScalar(v: WhereValue): v is null | boolean | number | string {
  return v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string";
}

/**
 * Missing (undefined) compares false with every operator, `!=` included; so do objects and arrays.
 * `==`/`!=` compare scalars strictly (no conversion: 1 != "1"); the order operators compare two
 * numbers or two strings (by UTF-16 code units), anything else is false.
 */
function compare(op: Comparison, l: WhereValue, r: WhereValue): boolean {
  if (!isScalar(l) || !isScalar(r)) return false;
  if (op === "==") return l === r;
  if (op === "!=") return l !== r;
  const comparable =
    (typeof l === "number" && typeof r === "number") || (typeof l === "string" && typeof r === "string");
  if (!comparable) return false;
  if (op === "<") return l < r;
  if (op === "<=") return l <= r;
  if (op === ">") return l > r;
  return l >= r;
}

/** A string containing a substring, or an array holding a scalar (each element scanned is a step). */
function contains(haystack: WhereValue, needle: WhereValue, budget: { steps: number }): boolean {
  if (typeof haystack === "string") return typeof needle === "string" && haystack.includes(needle);
  if (!Array.isArray(haystack) || !isScalar(needle)) return false;
  for (const item of haystack as unknown[]) {
    spend(budget);
    if (item === needle) return true;
  }
  return false;
}

function resolve(root: Root, steps: Step[], input: WhereInput): WhereValue {
  switch (root) {
    case "qos":
      return input.qos;
    case "retain":
      return input.retain;
    case "clientId":
      return input.clientId;
    case "topic":
      return steps.length === 0 ? input.topic : topicLevel(input.topic, steps[0] as number);
    case "user": {
      const found = input.userProperties?.find(([k]) => k === steps[0]);
      return found?.[1];
    }
    case "payload":
      return walk(input.json() as WhereValue, steps);
  }
}

/** Level `index` of a topic (0: the first; negative from the end), or missing. */
function topicLevel(topic: string, index: number): string | undefined {
  const levels = topic.split("/");
  return levels.at(index);
}

/** Follows `.field` (own fields of objects only) and `[i]` (arrays only) into a JSON value. */
function walk(value: WhereValue, steps: Step[]): WhereValue {
  let current: unknown = value;
  for (const step of steps) {
    if (typeof step === "number") {
      if (!Array.isArray(current)) return undefined;
      current = (current as unknown[]).at(step);
    } else {
      if (current === null || typeof current !== "object" || Array.isArray(current)) return undefined;
      if (!Object.prototype.hasOwnProperty.call(current, step)) return undefined;
      current = (current as Record<string, unknown>)[step];
    }
  }
  return current as WhereValue;
}

/** Compiles `topic[1]`, `payload.id`, ...: a path alone (for templates); throws WhereError. */
export function compilePath(source: string): { root: Root; steps: Step[] } {
  const node = compileWhere(source).root;
  if (node.k !== "path") throw new WhereError("expected a name such as topic[1], clientId or payload.id");
  return { root: node.root, steps: node.steps };
}

/** Resolves a compiled path (template.ts). */
export function resolveCompiledPath(path: { root: Root; steps: Step[] }, input: WhereInput): WhereValue {
  return resolve(path.root, path.steps, input);
}
