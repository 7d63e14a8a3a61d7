/** BRIDGES: validation at start (src/bridge/bridge-config.ts), hostile values included. */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { configProblems } from "../../src/config-check";
import { MAX_BRIDGES, MAX_MAPPINGS, parseBridges, type BridgeConfig } from "../../src/bridge/bridge-config";

const good = {
  name: "factory-1",
  url: "mqtt://10.0.0.5:1884",
  topics: [{ direction: "both", filter: "sensors/#", qos: 1, localPrefix: "plant/", remotePrefix: "edge/" }],
};
const parse = (list: unknown, env: Record<string, unknown> = {}) =>
  parseBridges({ ...env, BRIDGES: JSON.stringify(list) }, DEFAULT_CONFIG);
const problem = (list: unknown, env: Record<string, unknown> = {}) => {
  try {
    parse(list, env);
  } catch (err) {
    return (err as Error).message;
  }
  return "accepted";
};
const withEntry = (entry: Record<string, unknown>) => [{ ...good, ...entry }];

describe("BRIDGES", () => {
  it("is empty when unset or empty", () => {
    expect(parseBridges({}, DEFAULT_CONFIG)).toEqual([]);
    expect(parseBridges({ BRIDGES: "" }, DEFAULT_CONFIG)).toEqual([]);
    expect(parse([])).toEqual([]);
  });

  it("fills in the defaults of an entry", () => {
    const [bridge] = parse([good]) as [BridgeConfig];
    expect(bridge).toEqual({
      name: "factory-1",
      url: "mqtt://10.0.0.5:1884",
      transport: "tcp",
      host: "10.0.0.5",
      port: 1884,
      protocol: 5,
      clientId: "bridge-factory-1",
      keepalive: 60,
      cleanStart: false,
      sessionExpiry: 86400,
      topics: [{ direction: "both", filter: "sensors/#", qos: 1, localPrefix: "plant/", remotePrefix: "edge/" }],
      maxQueuedMessages: 10000,
      maxQueuedBytes: 16777216,
      maxInflight: 32,
    });
  });

  it("takes each transport with its default port", () => {
    const ports = ["mqtt://h", "mqtts://h", "ws://h/mqtt", "wss://h/mqtt"].map((url) => {
      const [b] = parse(withEntry({ url })) as [BridgeConfig];
      return [b.transport, b.port];
    });
    expect(ports).toEqual([
      ["tcp", 1883],
      ["tls", 8883],
      ["ws", 80],
      ["wss", 443],
    ]);
  });

  it("reads credentials only from the secrets the entry names, and says which is missing", () => {
    const entry = withEntry({ usernameSecret: "MOSQ_USER", passwordSecret: "MOSQ_PASS" });
    expect(parse(entry, { MOSQ_USER: "u", MOSQ_PASS: "p" })[0]).toMatchObject({
      usernameSecret: "MOSQ_USER",
      passwordSecret: "MOSQ_PASS",
    });
    expect(problem(entry, { MOSQ_USER: "u" })).toBe(
      "bridge factory-1: passwordSecret names MOSQ_PASS, which is not set",
    );
    // A value where a name belongs is refused, and not repeated whole in the message.
    const leaked = problem(withEntry({ passwordSecret: "hunter2-very-secret-password-value-that-is-long" }));
    expect(leaked).toMatch(/passwordSecret must be the NAME of a secret/);
    expect(leaked).not.toContain("that-is-long");
    expect(problem(withEntry({ url: "mqtt://user:pass@h" }))).toMatch(/must not hold credentials/);
  });

  it("refuses hostile or ill-formed names (they go into object ids, logs and metric labels)", () => {
    for (const name of [
      "",
      "../x",
      "a/../b",
      "x.y",
      "a:b",
      "a b",
      'x"}\n{',
      "$bridge",
      "Upper",
      "a".repeat(33),
      "ünï",
      "-x",
      7,
    ]) {
      expect(problem(withEntry({ name }))).toMatch(/name must be 1-32 of a-z/);
    }
    expect(problem([good, { ...good, url: "mqtt://other" }])).toBe("BRIDGES: the name factory-1 is used twice");
  });

  it("refuses bad URLs, protocols, client ids and numbers, naming the bridge", () => {
    expect(problem(withEntry({ url: "http://h" }))).toMatch(/url must be mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\//);
    expect(problem(withEntry({ url: "not a url" }))).toMatch(/url is not a URL/);
    expect(problem(withEntry({ protocol: 3 }))).toMatch(/protocol must be 4/);
    for (const clientId of ["", "has space", "ctl\u0001", "x".repeat(65)]) {
      expect(problem(withEntry({ clientId }))).toMatch(/clientId must be 1-64 printable ASCII/);
    }
    expect(problem(withEntry({ keepalive: 0 }))).toMatch(/keepalive must be an integer from 5 to 3600/);
    expect(problem(withEntry({ maxQueuedBytes: 1.5 }))).toMatch(/maxQueuedBytes must be an integer/);
    // held in memory as well as written: no larger than an isolate can hold beside everything else
    expect(problem(withEntry({ maxQueuedBytes: 33554432 }))).toBe("accepted");
    expect(problem(withEntry({ maxQueuedBytes: 33554433 }))).toMatch(
      /maxQueuedBytes must be an integer from 1024 to 33554432/,
    );
    expect(problem(withEntry({ cleanStart: "yes" }))).toMatch(/cleanStart must be true or false/);
    expect(problem(withEntry({ colour: "red" }))).toMatch(/unknown key "colour"/);
  });

  it("refuses bad mappings: direction, QoS, filters a bridge cannot use, prefixes", () => {
    const topics = (t: Record<string, unknown>) => withEntry({ topics: [{ direction: "in", filter: "a/#", ...t }] });
    expect(problem(topics({ direction: "sideways" }))).toMatch(/direction must be "in", "out" or "both"/);
    expect(problem(topics({ qos: 3 }))).toMatch(/qos must be an integer from 0 to 2/);
    for (const filter of ["a/#/b", "$share/g/a", "$SYS/#", ""]) {
      expect(problem(topics({ filter }))).toMatch(/is not a filter a bridge can use/);
    }
    for (const localPrefix of ["a/+/", "a", "#/", "x\u0000/"]) {
      expect(problem(topics({ localPrefix }))).toMatch(/localPrefix must be topic levels ending in "\/"/);
    }
    expect(problem(topics({ remotePrefix: "p".repeat(300) + "/" }))).toMatch(
      /remotePrefix must be a string of at most/,
    );
    expect(problem(withEntry({ topics: [] }))).toMatch(/topics must be a list of 1 to/);
  });

  it("is bounded: bridges per broker, mappings per bridge", () => {
    const many = Array.from({ length: MAX_BRIDGES + 1 }, (_, i) => ({ ...good, name: `b${i}` }));
    expect(problem(many)).toBe(`BRIDGES has more than ${MAX_BRIDGES} bridges`);
    expect(parse(many.slice(0, MAX_BRIDGES))).toHaveLength(MAX_BRIDGES);
    const mappings = Array.from({ length: MAX_MAPPINGS + 1 }, () => good.topics[0]);
    expect(problem(withEntry({ topics: mappings }))).toMatch(/topics must be a list of 1 to 32/);
  });

  it("is reported by configProblems under BRIDGES, with the other variables", () => {
    expect(configProblems({ BRIDGES: "{not json" })).toEqual([
      { variable: "BRIDGES", problem: expect.stringMatching(/^BRIDGES is not JSON/) },
    ]);
    expect(configProblems({ BRIDGES: JSON.stringify([good]), BRIDGE: {} })).toEqual([]);
  });

  it("needs the BRIDGE Durable Object binding when there are bridges (a library user's wrangler.toml may lack it)", () => {
    expect(configProblems({ BRIDGES: JSON.stringify([good]) })).toEqual([
      { variable: "BRIDGES", problem: expect.stringMatching(/^BRIDGES needs the Durable Object binding BRIDGE/) },
    ]);
    expect(configProblems({ BRIDGES: "[]" })).toEqual([]);
  });
});
