import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, loadConfig, ConfigError } from "../../src/config";
import { admitConnect, peekProtocolLevel } from "../../src/gateway/admission";
import { encodePacket } from "../../src/protocol/codec";

const base = { clientId: "dev1", clean: true, keepalive: 60 };

describe("CONNECT admission at the edge", () => {
  it("admits a normal client", () => {
    const a = admitConnect({ ...base, protocolVersion: 4 }, DEFAULT_CONFIG, () => "x");
    expect(a).toEqual({ ok: true, clientId: "dev1", assigned: false, keepAlive: 60, serverKeepAlive: undefined });
  });

  it("assigns an id to an empty one [MQTT-3.1.3-6] [MQTT311-3.1.3-6]", () => {
    const a = admitConnect({ ...base, clientId: "", protocolVersion: 5 }, DEFAULT_CONFIG, () => "x");
    expect(a).toMatchObject({ ok: true, clientId: "auto-x", assigned: true });
  });

  it("refuses an empty id without clean session in 3.1.1 with 0x02 [MQTT311-3.1.3-8]", () => {
    const a = admitConnect({ ...base, clientId: "", clean: false, protocolVersion: 4 }, DEFAULT_CONFIG, () => "x");
    expect(a).toMatchObject({ ok: false, connack: { returnCode: 2 } });
  });

  it("refuses an invalid will topic (v5 0x90)", () => {
    const a = admitConnect({ ...base, protocolVersion: 5, will: { topic: "a/#" } }, DEFAULT_CONFIG, () => "x");
    expect(a).toMatchObject({ ok: false, connack: { reasonCode: 0x90 } });
  });

  it("imposes Server Keep Alive on v5 clients asking for none or too much", () => {
    const a = admitConnect(
      { ...base, keepalive: 0, protocolVersion: 5 },
      { ...DEFAULT_CONFIG, maxKeepAlive: 120 },
      () => "x",
    );
    expect(a).toMatchObject({ ok: true, keepAlive: 120, serverKeepAlive: 120 });
  });

  it("reads the protocol level without a full parse", () => {
    const bytes = encodePacket({ cmd: "connect", clientId: "a", protocolVersion: 5 } as never, 5);
    expect(peekProtocolLevel(bytes)).toBe(5);
    const v3 = encodePacket({ cmd: "connect", clientId: "a", protocolVersion: 3, protocolId: "MQIsdp" } as never, 3);
    expect(peekProtocolLevel(v3)).toBe(3);
  });
});

describe("config", () => {
  it("uses defaults and reads strings", () => {
    expect(loadConfig({})).toEqual(DEFAULT_CONFIG);
    expect(loadConfig({ SHARD_COUNT: "4" }).shardCount).toBe(4);
  });
  it("names the variable when a value is invalid", () => {
    expect(() => loadConfig({ SHARD_COUNT: "0" })).toThrow(ConfigError);
    expect(() => loadConfig({ MAX_INFLIGHT: "many" })).toThrow(/MAX_INFLIGHT/);
  });
});

describe("client ids of broker bridges", () => {
  it("refuses a client id that names a bridge ($bridge:<name>) with 0x85 / 3.1.1 return code 2", () => {
    const v5 = admitConnect({ ...base, clientId: "$bridge:mosq", protocolVersion: 5 }, DEFAULT_CONFIG, () => "x");
    expect(v5).toMatchObject({ ok: false, connack: { reasonCode: 0x85 } });
    const v4 = admitConnect({ ...base, clientId: "$bridge:", protocolVersion: 4 }, DEFAULT_CONFIG, () => "x");
    expect(v4).toMatchObject({ ok: false, connack: { returnCode: 2 } });
    const near = admitConnect({ ...base, clientId: "bridge:mosq", protocolVersion: 5 }, DEFAULT_CONFIG, () => "x");
    expect(near).toMatchObject({ ok: true });
  });
});
