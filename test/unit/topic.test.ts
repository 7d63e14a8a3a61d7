import { describe, expect, it } from "vitest";
import { parseSharedFilter, topicFilterError, topicMatches, topicNameError } from "../../src/protocol/topic";

const limits = { maxTopicLength: 64, maxTopicLevels: 8 };

describe("topic names [MQTT-4.7.3-1, 4.7.3-2, 4.7.3-3, 4.7.0-1, 1.5.4-1, 1.5.4-2] [MQTT311-4.7.3-1, 4.7.3-2, 4.7.3-3, 1.5.3-1, 1.5.3-2]", () => {
  // U+FFFD is a character like any other: ill-formed input is found on the bytes (packet-check.ts)
  it.each(["a", "a/b", "/", "a//b", "$SYS/x", "sport/tennis/player1", "ü/ñ", "a/\uFFFD", "😀/x"])("accepts %j", (t) => {
    expect(topicNameError(t, limits)).toBeUndefined();
  });
  it.each([
    ["", "empty"],
    ["a/+", "wildcard in topic name"],
    ["a/#", "wildcard in topic name"],
    ["a\u0000b", "contains U+0000"],
    ["bad\uD800", "ill-formed UTF-8"], // a lone surrogate (HTTP API, hooks) has no UTF-8 form
    ["bad\uDC00x", "ill-formed UTF-8"],
    ["x".repeat(65), "too long"],
    ["a/b/c/d/e/f/g/h/i", "too many levels"],
  ])("rejects %j (%s)", (t, reason) => {
    expect(topicNameError(t, limits)).toBe(reason);
  });
});

describe("topic filters [MQTT-4.7.1-1, 4.7.1-2] [MQTT311-4.7.1-2, 4.7.1-3]", () => {
  it.each(["#", "+", "a/#", "+/b", "a/+/c", "+/+", "/#", "$share/g/a/#"])("accepts %j", (f) => {
    expect(topicFilterError(f, limits)).toBeUndefined();
  });
  it.each(["a#", "a/#/b", "#/a", "a+", "a/b+/c", "", "x\u0000"])("rejects %j", (f) => {
    expect(topicFilterError(f, limits)).toBeDefined();
  });
  it("parses shared subscriptions", () => {
    expect(parseSharedFilter("$share/g/a/b")).toEqual({ group: "g", filter: "a/b" });
    expect(parseSharedFilter("a/b")).toBeUndefined();
  });
});

describe("matching [MQTT-4.7.2-1, 4.7.3-4] [MQTT311-4.7.2-1, 4.7.3-4]", () => {
  const cases: [string, string, boolean][] = [
    ["sport/tennis/player1/#", "sport/tennis/player1", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
    ["sport/#", "sport", true],
    ["sport/tennis/+", "sport/tennis/player1", true],
    ["sport/tennis/+", "sport/tennis/player1/ranking", false],
    ["sport/+", "sport", false],
    ["sport/+", "sport/", true],
    ["+/+", "/finance", true],
    ["/+", "/finance", true],
    ["+", "/finance", false],
    ["#", "$SYS/info", false],
    ["+/monitor/Clients", "$SYS/monitor/Clients", false],
    ["$SYS/#", "$SYS/monitor/Clients", true],
    ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
    ["a/b", "a/b", true],
    ["a/b", "a/c", false],
    ["a/b", "a/b/c", false],
  ];
  it.each(cases)("%j vs %j -> %s", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});
