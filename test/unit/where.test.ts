/**
 * The `where` language of rules (src/rules/where.ts, docs/RULES.md): each construct on a real
 * message view, the "missing is false" semantics, the limits, and fuzzing: any string either
 * compiles or fails with a clean WhereError, and any well-formed condition evaluates without throwing.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileWhere, evaluateWhere, WHERE_LIMITS, WhereError, type WhereInput } from "../../src/rules/where";

function input(over: Partial<WhereInput> & { payload?: unknown } = {}): WhereInput {
  const { payload, ...rest } = over;
  return {
    topic: "devices/plant-7/telemetry",
    qos: 1,
    retain: false,
    clientId: "sensor-1",
    userProperties: [
      ["site", "north"],
      ["site", "second"],
    ],
    json: () => payload,
    ...rest,
  };
}

const holds = (source: string, over: Parameters<typeof input>[0] = {}) =>
  evaluateWhere(compileWhere(source), input(over)).matched;

describe("where: values", () => {
  it("topic levels are 0-based; negative counts from the end; the whole topic without an index", () => {
    expect(holds('topic[0] == "devices" && topic[1] == "plant-7" && topic[-1] == "telemetry"')).toBe(true);
    expect(holds('topic == "devices/plant-7/telemetry"')).toBe(true);
    expect(holds('topic[3] == "x"')).toBe(false); // out of range: missing
  });

  it("qos, retain and the publisher's client id", () => {
    expect(holds('qos == 1 && retain == false && clientId == "sensor-1"')).toBe(true);
    expect(holds("retain")).toBe(false);
    expect(holds("retain", { retain: true })).toBe(true);
    expect(holds("qos >= 2")).toBe(false);
  });

  it("user properties by name, dotted or bracketed; the first of a repeated name", () => {
    expect(holds('user.site == "north" && user["site"] == "north"')).toBe(true);
    expect(holds('user.floor == "1"')).toBe(false);
    expect(holds('user.site == "north"', { userProperties: undefined })).toBe(false);
  });

  it("JSON payload fields, nested, with array indexes and quoted keys", () => {
    const payload = { temp: 31.5, meta: { tags: ["hot", "roof"], "odd key": 1 }, ok: true, none: null };
    expect(holds("payload.temp > 30", { payload })).toBe(true);
    expect(holds("payload.temp > 40", { payload })).toBe(false);
    expect(holds('payload.meta.tags[1] == "roof" && payload.meta.tags[-1] == "roof"', { payload })).toBe(true);
    expect(holds('payload.meta["odd key"] == 1', { payload })).toBe(true);
    expect(holds("payload.ok && payload.none == null", { payload })).toBe(true);
    expect(holds("payload == 42", { payload: 42 })).toBe(true);
  });

  it("literals: numbers (negative, exponent), both quotes, escapes, true/false/null", () => {
    expect(holds("payload.t == -4.5e1", { payload: { t: -45 } })).toBe(true);
    expect(holds(`payload.s == 'a"b' && payload.s == "a\\"b"`, { payload: { s: 'a"b' } })).toBe(true);
    expect(holds('payload.s == "\\u00e9\\n"', { payload: { s: "é\n" } })).toBe(true);
  });
});

describe("where: operators", () => {
  it("comparison of numbers and of strings; no conversion between types", () => {
    expect(holds('"abc" < "abd" && 2 <= 2 && 3 > 2 && 2 >= 2 && 1 != 2')).toBe(true);
    expect(holds('payload.n == "1"', { payload: { n: 1 } })).toBe(false);
    expect(holds('payload.n < "2"', { payload: { n: 1 } })).toBe(false);
  });

  it("precedence: ! over comparison over && over ||; parentheses override", () => {
    expect(holds("true || false && false")).toBe(true);
    expect(holds("(true || false) && false")).toBe(false);
    expect(holds("!false && !(1 == 2)")).toBe(true);
    expect(holds("!!true")).toBe(true);
  });

  it("in a list of literals; contains on strings and arrays", () => {
    expect(holds('topic[1] in ["plant-6", "plant-7"]')).toBe(true);
    expect(holds("qos in [0, 2]")).toBe(false);
    expect(holds('topic contains "plant"')).toBe(true);
    expect(holds('payload.tags contains "hot"', { payload: { tags: ["cold", "hot"] } })).toBe(true);
    expect(holds('payload.tags contains "warm"', { payload: { tags: ["cold", "hot"] } })).toBe(false);
  });

  it("missing compares false with every operator, != included; objects and arrays compare false", () => {
    for (const op of ["==", "!=", "<", "<=", ">", ">="]) {
      expect(holds(`payload.absent ${op} 1`, { payload: {} })).toBe(false);
      expect(holds(`payload.temp ${op} 1`, { payload: undefined })).toBe(false); // not JSON
      expect(holds(`payload.obj ${op} 1`, { payload: { obj: { a: 1 } } })).toBe(false);
    }
    expect(holds("!(payload.absent == 1)", { payload: {} })).toBe(true);
    expect(holds('payload.x.y == 1 || payload["__proto__"] == 1', { payload: { x: 5 } })).toBe(false);
  });

  it("a bare value is true only when it is the boolean true", () => {
    expect(holds("payload.v", { payload: { v: 1 } })).toBe(false);
    expect(holds("payload.v", { payload: { v: "true" } })).toBe(false);
    expect(holds("payload.v", { payload: { v: true } })).toBe(true);
  });
});

describe("where: compile errors name what and where", () => {
  it.each([
    ["payload.temp >", /expected a value, got the end/],
    ["temp > 30", /unknown name "temp"/],
    ['topic["a"] == 1', /topic takes one level index/],
    ["user == 1", /user takes one property name/],
    ["qos.x == 1", /qos has no fields/],
    ['"open', /unterminated string/],
    ["1 == 1 )", /unexpected "\)"/],
    ["a = 1", /unexpected character "="|unknown name/],
    ["qos in [payload.x]", /a list holds literals only/],
    ['"\\q"', /bad escape/],
    ["1e999 > 0", /number out of range/],
  ])("%s", (source, message) => {
    expect(() => compileWhere(source)).toThrow(WhereError);
    expect(() => compileWhere(source)).toThrow(message);
  });
});

describe("where: limits", () => {
  it("a condition longer than maxLength is refused", () => {
    const long = `qos == 1${" || qos == 1".repeat(WHERE_LIMITS.maxLength / 10)}`;
    expect(long.length).toBeGreaterThan(WHERE_LIMITS.maxLength);
    expect(() => compileWhere(long)).toThrow(/longer than 1024/);
  });

  it("nesting deeper than maxDepth is refused, at maxDepth accepted", () => {
    const nest = (n: number) => `${"(".repeat(n)}qos == 1${")".repeat(n)}`;
    expect(evaluateWhere(compileWhere(nest(WHERE_LIMITS.maxDepth)), input()).matched).toBe(true);
    expect(() => compileWhere(nest(WHERE_LIMITS.maxDepth + 1))).toThrow(/nested deeper than 32/);
    expect(() => compileWhere(`${"!".repeat(WHERE_LIMITS.maxDepth + 1)}true`)).toThrow(/nested deeper/);
  });

  it("a list longer than maxListItems is refused", () => {
    const list = Array.from({ length: WHERE_LIMITS.maxListItems + 1 }, (_, i) => i).join(",");
    expect(() => compileWhere(`qos in [${list}]`)).toThrow(/at most 64 values/);
  });

  it("a condition that runs out of steps is false and says so", () => {
    const tags = Array.from({ length: WHERE_LIMITS.maxSteps * 2 }, (_, i) => `t${i}`);
    const outcome = evaluateWhere(compileWhere('payload.tags contains "absent"'), input({ payload: { tags } }));
    expect(outcome).toEqual({ matched: false, overrun: true, fault: false });
    const short = evaluateWhere(compileWhere('payload.tags contains "t3"'), input({ payload: { tags } }));
    expect(short).toEqual({ matched: true, overrun: false, fault: false });
  });
});

/** Well-formed conditions, built from the grammar (docs/RULES.md). */
const valueArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("qos", "retain", "clientId", "topic", "topic[0]", "topic[-1]", "user.site", 'user["a b"]'),
  fc
    .array(fc.oneof(fc.constantFrom("a", "b", "temp", "__proto__", "length"), fc.integer({ min: -3, max: 3 })), {
      maxLength: 4,
    })
    .map((steps) => `payload${steps.map((s) => (typeof s === "number" ? `[${s}]` : `.${s}`)).join("")}`),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: 0 }).map((n) => String(n)),
  fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s)),
  fc.constantFrom("true", "false", "null"),
);
const conditionArb: fc.Arbitrary<string> = fc.letrec((tie) => ({
  cond: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    valueArb,
    fc
      .tuple(valueArb, fc.constantFrom("==", "!=", "<", "<=", ">", ">=", "contains"), valueArb)
      .map(([l, op, r]) => `${l} ${op} ${r}`),
    fc
      .tuple(valueArb, fc.array(fc.constantFrom("1", '"x"', "null", "true"), { maxLength: 4 }))
      .map(([l, items]) => `${l} in [${items.join(", ")}]`),
    fc.tuple(tie("cond"), fc.constantFrom("&&", "||"), tie("cond")).map(([l, op, r]) => `(${l}) ${op} (${r})`),
    tie("cond").map((c) => `!(${c})`),
  ),
})).cond as fc.Arbitrary<string>;

describe("where: fuzzing", () => {
  it("any string compiles or fails with a WhereError, never anything else", () => {
    const alphabet = fc.constantFrom(..."()[]{}.,!&|=<>-+\"'\\ 0123456789abeinpqrstuxyz_\u0000é\n".split(""));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: alphabet, maxLength: 80 })), (source) => {
        try {
          compileWhere(source);
        } catch (err) {
          expect(err).toBeInstanceOf(WhereError);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("every well-formed condition compiles and evaluates without throwing on any JSON payload", () => {
    fc.assert(
      fc.property(conditionArb, fc.jsonValue(), fc.string({ maxLength: 20 }), (source, payload, topic) => {
        const outcome = evaluateWhere(compileWhere(source), input({ payload, topic }));
        expect(outcome.fault).toBe(false); // nothing threw inside (a throw is caught, and would count false)
        expect(typeof outcome.matched).toBe("boolean");
      }),
      { numRuns: 3000 },
    );
  });
});
