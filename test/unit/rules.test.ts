/**
 * Rules (src/rules, docs/RULES.md): RULES checked at start with errors that name the rule; topic
 * templates that never let a substituted value change the topic's shape; the engine's actions, what
 * an acknowledgement waits for, failures counted, and chains of republishes bounded.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { configProblems } from "../../src/config-check";
import { DEFAULT_CONFIG } from "../../src/config";
import { counters } from "../../src/observability/counters";
import type { RoutedMessage } from "../../src/protocol/message";
import { RuleEngine, type AnalyticsPoint, type QueuedMessage, type RuleSinks } from "../../src/rules/rule-engine";
import { RuleTally, type RuleCounts } from "../../src/rules/rule-tally";
import { WEBHOOK_LIMITS } from "../../src/rules/webhook";
import { bindingProblems, parseRules, RULES_LIMITS } from "../../src/rules/rules-config";
import { compileTemplate, renderTemplate } from "../../src/rules/template";
import { at } from "../support/elements";

const LIMITS = DEFAULT_CONFIG;
const TELEMETRY = {
  name: "hot",
  filter: "devices/+/telemetry",
  where: "payload.temp > 30",
  actions: [{ type: "queue", binding: "HOT_QUEUE" }],
};

describe("RULES: checked at start", () => {
  it("absent or empty: no rules; a valid list compiles in order", () => {
    expect(parseRules(undefined, LIMITS)).toEqual([]);
    expect(parseRules("", LIMITS)).toEqual([]);
    const rules = parseRules(
      JSON.stringify([TELEMETRY, { name: "all", filter: "#", actions: TELEMETRY.actions }]),
      LIMITS,
    );
    expect(rules.map((r) => [r.name, r.filter, r.where?.source])).toEqual([
      ["hot", "devices/+/telemetry", "payload.temp > 30"],
      ["all", "#", undefined],
    ]);
  });

  it.each([
    ["{", /RULES must be JSON/],
    [{ name: "x" }, /must be a JSON list/],
    [[{ ...TELEMETRY, filters: "a" }], /RULES\[0\] \(hot\): a rule has an unknown field "filters"/],
    [[{ ...TELEMETRY, name: "bad name" }], /RULES\[0\]: name must be 1 to 64 letters/],
    [[TELEMETRY, TELEMETRY], /RULES\[1\] \(hot\): the name "hot" is used twice/],
    [[{ ...TELEMETRY, filter: "a/#/b" }], /filter misplaced '#'/],
    [[{ ...TELEMETRY, filter: "$share/g/a" }], /filter must not be a \$share filter/],
    [[{ ...TELEMETRY, where: "payload.temp >" }], /RULES\[0\] \(hot\): where: expected a value, got the end/],
    [[{ ...TELEMETRY, actions: [] }], /actions must be a non-empty list/],
    [
      [{ ...TELEMETRY, actions: [{ type: "email" }] }],
      /actions\[0\]: type must be "republish", "queue", "webhook" or "analytics"/,
    ],
    [[{ ...TELEMETRY, actions: [{ type: "webhook", url: "ftp://x" }] }], /url must be an http: or https: URL/],
    [
      [{ ...TELEMETRY, actions: [{ type: "webhook", url: "https://x", headers: { A: "Bearer x" } }] }],
      /must name a secret/,
    ],
    [
      [{ ...TELEMETRY, actions: [{ type: "webhook", url: "https://x", headers: { "A B": "S" } }] }],
      /is no header name/,
    ],
    [[{ ...TELEMETRY, actions: [{ type: "queue", binding: "no-dash" }] }], /binding must name a Queue binding/],
    [[{ ...TELEMETRY, actions: [{ type: "republish", topic: "a/+" }] }], /topic a topic name has no wildcards/],
    [[{ ...TELEMETRY, actions: [{ type: "republish", topic: "$SYS/x" }] }], /topic must not start with \$/],
    [[{ ...TELEMETRY, actions: [{ type: "republish", topic: "a/${topic[1]" }] }], /unclosed/],
    [[{ ...TELEMETRY, actions: [{ type: "republish", topic: "a/${temp}" }] }], /unknown name "temp"/],
    [[{ ...TELEMETRY, actions: [{ type: "republish", topic: "a", qos: 3 }] }], /qos must be 0, 1 or 2/],
  ])("%j is refused with a clear reason", (raw, message) => {
    expect(() => parseRules(typeof raw === "string" ? raw : JSON.stringify(raw), LIMITS)).toThrow(message);
  });

  it("more than the limit of rules or of actions is refused", () => {
    const many = Array.from({ length: RULES_LIMITS.maxRules + 1 }, (_, i) => ({ ...TELEMETRY, name: `r${i}` }));
    expect(() => parseRules(JSON.stringify(many), LIMITS)).toThrow(/at most 100 rules/);
    const actions = Array.from({ length: RULES_LIMITS.maxActionsPerRule + 1 }, () => TELEMETRY.actions[0]);
    expect(() => parseRules(JSON.stringify([{ ...TELEMETRY, actions }]), LIMITS)).toThrow(/at most 8 actions/);
  });

  it("a queue action whose binding is missing, or is no Queue, is a configuration problem", () => {
    const rules = parseRules(JSON.stringify([TELEMETRY]), LIMITS);
    expect(bindingProblems(rules, {})).toEqual([
      "rule hot: no binding HOT_QUEUE (add [[queues.producers]] to wrangler.toml)",
    ]);
    expect(bindingProblems(rules, { HOT_QUEUE: "text" })).toEqual([
      "rule hot: binding HOT_QUEUE is not a Queue producer",
    ]);
    expect(bindingProblems(rules, { HOT_QUEUE: { send: () => undefined } })).toEqual([]);
  });

  it("an analytics action's binding must be an Analytics Engine dataset; its names must parse", () => {
    const action = { type: "analytics", binding: "AE", blobs: ["topic[1]"], doubles: ["payload.temp"] };
    const rules = parseRules(JSON.stringify([{ ...TELEMETRY, actions: [action] }]), LIMITS);
    expect(bindingProblems(rules, {})).toEqual([
      "rule hot: no binding AE (add [[analytics_engine_datasets]] to wrangler.toml)",
    ]);
    expect(bindingProblems(rules, { AE: { send: () => undefined } })).toEqual([
      "rule hot: not an Analytics Engine binding: AE (add [[analytics_engine_datasets]] to wrangler.toml)",
    ]);
    expect(bindingProblems(rules, { AE: { writeDataPoint: () => undefined } })).toEqual([]);
    const bad = (over: object) => JSON.stringify([{ ...TELEMETRY, actions: [{ ...action, ...over }] }]);
    expect(() => parseRules(bad({ doubles: ["payload.temp >"] }), LIMITS)).toThrow(
      /doubles: expected a value, got the end/,
    );
    expect(() => parseRules(bad({ index: "temp" }), LIMITS)).toThrow(/index: unknown name "temp"/);
    expect(() => parseRules(bad({ blobs: Array(21).fill("qos") }), LIMITS)).toThrow(/at most 20 names/);
  });

  it("a webhook header's secret that is missing is a configuration problem", () => {
    const hook = {
      ...TELEMETRY,
      actions: [{ type: "webhook", url: "https://h", headers: { Authorization: "HOOK_TOKEN" } }],
    };
    const rules = parseRules(JSON.stringify([hook]), LIMITS);
    expect(bindingProblems(rules, {})).toEqual([
      "rule hot: no secret HOOK_TOKEN for header Authorization (wrangler secret put HOOK_TOKEN)",
    ]);
    expect(bindingProblems(rules, { HOOK_TOKEN: "Bearer x" })).toEqual([]);
  });

  it("configProblems reports RULES (its syntax and its bindings) with the other variables", () => {
    const base = { ALLOW_ANONYMOUS: "true" };
    expect(configProblems({ ...base, RULES: JSON.stringify([TELEMETRY]) })).toEqual([
      { variable: "RULES", problem: "rule hot: no binding HOT_QUEUE (add [[queues.producers]] to wrangler.toml)" },
    ]);
    expect(configProblems({ ...base, RULES: "[1]" })).toEqual([
      { variable: "RULES", problem: "RULES[0]: must be an object {name, filter, where?, actions}" },
    ]);
    expect(configProblems({ ...base, RULES: "[]" })).toEqual([]);
  });
});

function view(topic: string, payload: unknown = undefined) {
  return {
    topic,
    qos: 1,
    retain: false,
    clientId: "c1",
    userProperties: [["k", "v/+"]] as [string, string][],
    json: () => payload,
  };
}

describe("republish topic templates", () => {
  it("substitutes levels, names and payload fields", () => {
    const template = compileTemplate("alerts/${topic[1]}/${clientId}/${payload.n}/${payload.ok}");
    expect(renderTemplate(template, view("devices/p7/t", { n: 3, ok: true }), LIMITS)).toEqual({
      topic: "alerts/p7/c1/3/true",
    });
  });

  it.each([
    ["a/b/c", "${topic[5]}", /missing/], // out of range
    ["a/b/c", "x/${payload.obj}", /missing or not a string/],
    ["a/b/c", "x/${user.k}", /change the topic's shape/], // "v/+"
    ["a/b/c", "x/${payload.s}", /change the topic's shape/],
  ])("%s with %s is not rendered", (topic, source, problem) => {
    const hostile = ["x/y", "+", "#", "a\u0000b", ""];
    for (const s of hostile) {
      const rendered = renderTemplate(compileTemplate(source), view(topic, { obj: {}, s }), LIMITS);
      expect(rendered).toEqual({ problem: expect.stringMatching(problem) });
    }
  });

  it("a value that would make a $ topic, or a topic over the limits, is not rendered", () => {
    const leading = renderTemplate(compileTemplate("${payload.s}/x"), view("a", { s: "$SYS" }), LIMITS);
    expect(leading).toEqual({ problem: "the topic would start with $" });
    const long = renderTemplate(compileTemplate("x/${payload.s}"), view("a", { s: "y".repeat(2000) }), LIMITS);
    expect(long).toEqual({ problem: "the topic would be invalid (too long)" });
  });
});

function message(topic: string, payload: string, over: Partial<RoutedMessage> = {}): RoutedMessage {
  return {
    id: "c1:1",
    origin: "c1",
    topic,
    payload: new TextEncoder().encode(payload),
    qos: 1,
    retain: false,
    receivedAt: 1000,
    ...over,
  };
}

/** Sinks that record what the engine did; `hold` keeps queue sends pending until released. */
function sinks() {
  const routed: RoutedMessage[] = [];
  const sent: { binding: string; body: QueuedMessage }[] = [];
  let release: (() => void) | undefined;
  const posts: { url: string; init: RequestInit }[] = [];
  const points: AnalyticsPoint[] = [];
  /** The webhook's answers in turn (then 200): a status, "error" (no answer) or "hold" (never answers). */
  const answers: (number | "error" | "hold")[] = [];
  const state = { hold: false, failQueue: false, failRoute: false };
  const io: RuleSinks = {
    route: (m) => {
      routed.push(m);
      return state.failRoute ? Promise.reject(new Error("shard down")) : Promise.resolve(1);
    },
    queue: (binding) =>
      binding === "MISSING"
        ? undefined
        : {
            send: (body) => {
              sent.push({ binding, body: body as QueuedMessage });
              if (state.failQueue) return Promise.reject(new Error("queue unavailable"));
              return state.hold ? new Promise<void>((r) => (release = r)) : Promise.resolve();
            },
          },
    fetch: (url, init) => {
      posts.push({ url, init });
      const answer = answers.shift() ?? 200;
      if (answer === "hold") return new Promise<Response>(() => undefined);
      if (answer === "error") return Promise.reject(new Error("connection refused"));
      return Promise.resolve(new Response("", { status: answer }));
    },
    analytics: (binding) =>
      binding === "MISSING"
        ? undefined
        : {
            writeDataPoint: (point) => {
              if ((point.indexes?.[0]?.length ?? 0) > 96) throw new Error("index over 96 bytes");
              points.push(point);
            },
          },
    secret: (name) => (name === "HOOK_TOKEN" ? "Bearer s3cret" : undefined),
    sleep: () => Promise.resolve(),
    now: () => 0,
  };
  return { io, routed, sent, state, posts, answers, points, release: () => release?.() };
}

const engine = (rules: unknown[], io: RuleSinks, over: { maxDepth?: number; maxPayloadBytes?: number } = {}) =>
  new RuleEngine(
    parseRules(JSON.stringify(rules), LIMITS),
    { ...LIMITS, maxDepth: 3, maxPayloadBytes: 1024, ...over },
    io,
  );

describe("the rule engine", () => {
  beforeEach(() => {
    counters.ruleActionsFailed = 0;
    counters.ruleChainsCut = 0;
    counters.ruleConditionOverruns = 0;
  });

  it("devices/+/telemetry over 30 goes to the queue as JSON; others do not", async () => {
    const s = sinks();
    const rules = engine([TELEMETRY], s.io);
    expect(rules.apply(message("devices/d1/telemetry", '{"temp":25}'))).toBeUndefined();
    expect(rules.apply(message("devices/d1/status", '{"temp":35}'))).toBeUndefined();
    const props = { userProperties: [["site", "north"]] as [string, string][], contentType: "application/json" };
    await rules.apply(message("devices/d1/telemetry", '{"temp":35}', { properties: props }));
    expect(s.sent).toEqual([
      {
        binding: "HOT_QUEUE",
        body: {
          rule: "hot",
          id: "c1:1",
          topic: "devices/d1/telemetry",
          qos: 1,
          retain: false,
          clientId: "c1",
          receivedAt: 1000,
          payload: '{"temp":35}',
          userProperties: [["site", "north"]],
          contentType: "application/json",
        },
      },
    ]);
  });

  it("a payload that is not UTF-8 is sent as base64; one over maxPayloadBytes has no fields", async () => {
    const s = sinks();
    const rules = engine([{ name: "all", filter: "#", actions: [{ type: "queue", binding: "Q" }] }, TELEMETRY], s.io, {
      maxPayloadBytes: 16,
    });
    await rules.apply(message("x", "", { payload: new Uint8Array([0xff, 0x00]) }));
    expect(at(s.sent, 0).body.payloadBase64).toBe("/wA=");
    expect(at(s.sent, 0).body.payload).toBeUndefined();
    await rules.apply(message("devices/d/telemetry", JSON.stringify({ temp: 99, pad: "x".repeat(16) })));
    expect(s.sent.map((m) => m.body.rule)).toEqual(["all", "all"]); // "hot" saw no fields
  });

  it("the acknowledgement waits for the queue send", async () => {
    const s = sinks();
    s.state.hold = true;
    let done = false;
    const waiting = engine([TELEMETRY], s.io)
      .apply(message("devices/d1/telemetry", '{"temp":31}'))!
      .then(() => (done = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(s.sent).toHaveLength(1);
    expect(done).toBe(false);
    s.release();
    await waiting;
    expect(done).toBe(true);
  });

  it("a failed queue send rejects (no acknowledgement) and is counted", async () => {
    const s = sinks();
    s.state.failQueue = true;
    await expect(engine([TELEMETRY], s.io).apply(message("devices/d1/telemetry", '{"temp":31}'))).rejects.toThrow(
      "queue unavailable",
    );
    expect(counters.ruleActionsFailed).toBe(1);
    const missing = { ...TELEMETRY, actions: [{ type: "queue", binding: "MISSING" }] };
    await expect(engine([missing], s.io).apply(message("devices/d1/telemetry", '{"temp":31}'))).rejects.toThrow(
      "no binding MISSING",
    );
    expect(counters.ruleActionsFailed).toBe(2);
  });

  it("republish routes a copy with the template's topic, QoS and retain, and an id derived from the original", async () => {
    const s = sinks();
    const rule = {
      name: "alert",
      filter: "devices/+/telemetry",
      actions: [{ type: "republish", topic: "alerts/${topic[1]}", qos: 2, retain: true }],
    };
    await engine([rule], s.io).apply(message("devices/d9/telemetry", "hi"));
    expect(s.routed).toEqual([{ ...message("alerts/d9", "hi"), id: "c1:1>alert.0", qos: 2, retain: true }]);
  });

  it("a republish whose value is hostile is not routed, is counted, and does not hold the acknowledgement", async () => {
    const s = sinks();
    const rule = {
      name: "alert",
      filter: "devices/#",
      actions: [{ type: "republish", topic: "alerts/${payload.id}", qos: 1 }],
    };
    expect(engine([rule], s.io).apply(message("devices/x", '{"id":"a/#"}'))).toBeUndefined();
    expect(s.routed).toEqual([]);
    expect(counters.ruleActionsFailed).toBe(1);
  });

  it.each([
    ["queue", { type: "queue", binding: "Q" }],
    ["republish", { type: "republish", topic: "out/x", qos: 1 }],
    ["webhook", { type: "webhook", url: "https://example.com/hook" }],
  ])(
    "a match and its %s action's outcome reach the tally in one report, when the action is done",
    async (_, action) => {
      const { io, state, release } = sinks();
      state.hold = true; // a queue send stays under way until released
      // So do a copy's routing and a webhook's answer.
      const held: (() => void)[] = [release];
      const hold = <T>(value: T) => new Promise<T>((resolve) => held.push(() => resolve(value)));
      const reports: RuleCounts[] = [];
      const timers: (() => void)[] = [];
      const tally = new RuleTally({ now: () => 0, later: (_ms, fn) => void timers.push(fn) }, (_c, counts) =>
        reports.push(counts),
      );
      const rules = [
        { name: "r", filter: "t/#", actions: [action, { type: "analytics", binding: "A", blobs: ["topic"] }] },
      ];
      const e = engine(rules, {
        ...io,
        route: () => hold(1),
        fetch: () => hold(new Response("", { status: 200 })),
        count: (rule, outcome, clientId) => tally.add(rule, outcome, clientId),
        counting: (work) => void tally.track(work),
      });
      const acked = e.apply(message("t/1", "x"));
      const turns = async () => {
        for (let turn = 0; turn < 5; turn++) {
          timers.splice(0).forEach((fn) => fn());
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      };
      await turns();
      expect(reports).toEqual([]); // the action is under way
      for (const next of held) next();
      await acked;
      await turns();
      expect(reports).toEqual([{ r: { matched: 1, ok: 2, failed: 0 } }]);
    },
  );

  it("a QoS 1 republish that fails to route rejects; a QoS 0 one only counts", async () => {
    const s = sinks();
    s.state.failRoute = true;
    const rule = (qos: number) => ({ name: "r", filter: "a", actions: [{ type: "republish", topic: "b", qos }] });
    await expect(engine([rule(1)], s.io).apply(message("a", "x"))).rejects.toThrow("shard down");
    expect(engine([rule(0)], s.io).apply(message("a", "x"))).toBeUndefined();
    await new Promise((r) => setTimeout(r, 0));
    expect(counters.ruleActionsFailed).toBe(2);
  });

  it("a rule that matches its own output stops after maxDepth copies, and the cut is counted", async () => {
    const s = sinks();
    const loop = {
      name: "loop",
      filter: "loop/#",
      actions: [{ type: "republish", topic: "loop/${topic[-1]}x", qos: 1 }],
    };
    await engine([loop], s.io, { maxDepth: 3 }).apply(message("loop/a", "x"));
    expect(s.routed.map((m) => m.topic)).toEqual(["loop/ax", "loop/axx", "loop/axxx"]);
    expect(counters.ruleChainsCut).toBe(1);
  });

  it("rules run in RULES order, each matching rule's actions in their order", async () => {
    const s = sinks();
    const first = {
      name: "first",
      filter: "#",
      actions: [
        { type: "queue", binding: "A" },
        { type: "queue", binding: "B" },
      ],
    };
    const second = {
      name: "second",
      filter: "t/+",
      where: 'topic[1] == "x"',
      actions: [{ type: "queue", binding: "C" }],
    };
    await engine([first, second], s.io).apply(message("t/x", "p"));
    expect(s.sent.map((m) => `${m.body.rule}:${m.binding}`)).toEqual(["first:A", "first:B", "second:C"]);
  });

  describe("webhook (best effort)", () => {
    const HOOK = {
      name: "hook",
      filter: "w/#",
      actions: [{ type: "webhook", url: "https://example.test/in", headers: { Authorization: "HOOK_TOKEN" } }],
    };
    const settle = () => new Promise((r) => setTimeout(r, 10));

    it("POSTs the message as JSON with headers from secrets; the acknowledgement does not wait", async () => {
      const s = sinks();
      s.answers.push("hold");
      expect(engine([HOOK], s.io).apply(message("w/1", "hello"))).toBeUndefined();
      await settle();
      expect(s.posts).toHaveLength(1);
      const { url, init } = at(s.posts, 0);
      expect(url).toBe("https://example.test/in");
      expect(init.method).toBe("POST");
      expect(init.headers).toEqual({ "content-type": "application/json", Authorization: "Bearer s3cret" });
      expect(JSON.parse(init.body as string)).toMatchObject({ rule: "hook", topic: "w/1", payload: "hello" });
    });

    it("retries after 5xx, 429 and a network error, up to 3 attempts; then counts the failure", async () => {
      const s = sinks();
      s.answers.push(503, 429);
      engine([HOOK], s.io).apply(message("w/1", "x"));
      await settle();
      expect(s.posts).toHaveLength(3);
      expect(counters.ruleActionsFailed).toBe(0);
      s.answers.push("error", 500, 502);
      engine([HOOK], s.io).apply(message("w/1", "x"));
      await settle();
      expect(s.posts).toHaveLength(6);
      expect(counters.ruleActionsFailed).toBe(1);
    });

    it("does not retry another 4xx", async () => {
      const s = sinks();
      s.answers.push(400);
      engine([HOOK], s.io).apply(message("w/1", "x"));
      await settle();
      expect(s.posts).toHaveLength(1);
      expect(counters.ruleActionsFailed).toBe(1);
    });

    it("beyond maxInFlight under way, a webhook is not sent and is counted", async () => {
      const s = sinks();
      const rules = engine([HOOK], s.io);
      for (let i = 0; i < WEBHOOK_LIMITS.maxInFlight + 1; i++) {
        s.answers.push("hold");
        rules.apply(message("w/1", String(i)));
      }
      await settle();
      expect(s.posts).toHaveLength(WEBHOOK_LIMITS.maxInFlight);
      expect(counters.ruleActionsFailed).toBe(1);
    });
  });

  describe("analytics", () => {
    const point = (over: object = {}) => ({
      name: "stats",
      filter: "devices/+/telemetry",
      actions: [
        {
          type: "analytics",
          binding: "AE",
          blobs: ["topic[1]", "clientId", "payload.status", "payload.obj"],
          doubles: ["payload.temp", "qos", "payload.ok", "payload.absent"],
          index: "topic[1]",
          ...over,
        },
      ],
    });

    it("writes one data point with the chosen fields; nothing waits for it", () => {
      const s = sinks();
      const payload = JSON.stringify({ temp: 31.5, status: "ok", ok: true, obj: { a: 1 } });
      expect(engine([point()], s.io).apply(message("devices/d7/telemetry", payload))).toBeUndefined();
      expect(s.points).toEqual([{ blobs: ["d7", "c1", "ok", null], doubles: [31.5, 1, 1, 0], indexes: ["d7"] }]);
    });

    it("a point the dataset refuses, or a missing binding, is counted and does not throw", () => {
      const s = sinks();
      const long = "x".repeat(100);
      engine([point()], s.io).apply(message(`devices/${long}/telemetry`, "{}"));
      engine([point({ binding: "MISSING" })], s.io).apply(message("devices/d/telemetry", "{}"));
      expect(s.points).toEqual([]);
      expect(counters.ruleActionsFailed).toBe(2);
    });
  });
});
