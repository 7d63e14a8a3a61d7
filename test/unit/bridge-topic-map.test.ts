/** A bridge's topic mappings (src/bridge/topic-map.ts): Mosquitto's prefix rules, both ways. */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { parseBridges, type BridgeConfig } from "../../src/bridge/bridge-config";
import { localSubscriptions, remoteSubscriptions, toLocal, toRemote } from "../../src/bridge/topic-map";

const [bridge] = parseBridges(
  {
    BRIDGES: JSON.stringify([
      {
        name: "m",
        url: "mqtt://h",
        topics: [
          { direction: "in", filter: "cmd/#", qos: 2, localPrefix: "remote/", remotePrefix: "site-7/" },
          { direction: "out", filter: "+/telemetry", qos: 1, localPrefix: "devices/", remotePrefix: "edge/devices/" },
          { direction: "both", filter: "chat/#", qos: 0 },
        ],
      },
    ]),
  },
  DEFAULT_CONFIG,
) as [BridgeConfig];

describe("bridge topic mappings", () => {
  it("subscribes remotely for `in` and `both`, locally for `out` and `both`, prefixes first", () => {
    expect(remoteSubscriptions(bridge)).toEqual([
      { filter: "site-7/cmd/#", qos: 2 },
      { filter: "chat/#", qos: 0 },
    ]);
    expect(localSubscriptions(bridge)).toEqual([
      { filter: "devices/+/telemetry", qos: 1 },
      { filter: "chat/#", qos: 0 },
    ]);
  });

  it("swaps the prefixes and caps the QoS at the mapping's", () => {
    expect(toLocal(bridge, "site-7/cmd/reboot", 2)).toEqual({ topic: "remote/cmd/reboot", qos: 2 });
    expect(toRemote(bridge, "devices/d1/telemetry", 2)).toEqual({ topic: "edge/devices/d1/telemetry", qos: 1 });
    expect(toRemote(bridge, "chat/room", 1)).toEqual({ topic: "chat/room", qos: 0 });
    expect(toLocal(bridge, "chat/room", 0)).toEqual({ topic: "chat/room", qos: 0 });
  });

  it("crosses nothing a mapping of that direction does not cover", () => {
    expect(toLocal(bridge, "devices/d1/telemetry", 1)).toBeUndefined(); // an `out` mapping only
    expect(toRemote(bridge, "remote/cmd/reboot", 1)).toBeUndefined(); // an `in` mapping only
    expect(toLocal(bridge, "site-7/other", 1)).toBeUndefined();
    expect(toRemote(bridge, "devices/", 1)).toBeUndefined(); // the prefix alone is no topic of the filter
  });
});
