import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { brokerHttp, brokerUrl, closeAll, connect, rawClient, REFUSAL_CLOSE_MS } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

describe("HTTP surface", () => {
  it("answers / and /health plainly", async () => {
    expect((await fetch(`${brokerHttp()}/`)).status).toBe(200);
    expect(await (await fetch(`${brokerHttp()}/health`)).json()).toEqual({ status: "ok" });
  });

  it("answers a plain HTTP request to /mqtt with 426 and a message", async () => {
    const res = await fetch(`${brokerHttp()}/mqtt`);
    expect(res.status).toBe(426);
    expect(await res.text()).toMatch(/WebSocket/);
  });

  it("negotiates the mqtt subprotocol (and mqttv3.1) [MQTT-6.0.0-4] [MQTT311-6.0.0-4]", async () => {
    // the subprotocol the server chose, for what a client offers
    const chosen = async (offered: string[]) => {
      const ws = new WebSocket(brokerUrl(), offered);
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      ws.terminate();
      return ws.protocol;
    };
    expect(await chosen(["mqtt"])).toBe("mqtt");
    expect(await chosen(["mqttv3.1", "mqtt"])).toBe("mqtt");
    expect(await chosen(["mqttv3.1"])).toBe("mqttv3.1"); // MQTT 3.1 clients, which offer only this
    const a = await rawClient(4, "mqtt");
    expect((await a.connect({ clientId: uid() })).returnCode).toBe(0);
    a.close();
    const b = await rawClient(4, "mqttv3.1");
    expect((await b.connect({ clientId: uid() })).returnCode).toBe(0);
    b.close();
  });
});

describe.each([4, 5] as const)("CONNECT, MQTT v%i", (version) => {
  it("connects MQTT.js and answers CONNACK [MQTT-3.1.4-5, 3.2.0-1] [MQTT311-3.1.4-4, 3.2.0-1]", async () => {
    const client = await connect(version);
    expect(client.connected).toBe(true);
    // On the wire: the first packet the broker sends is the CONNACK, with code 0x00
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: uid() });
    expect(raw.received.map((p) => p.cmd)).toEqual(["connack"]);
    expect(version === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
    raw.close();
  });

  it("assigns a client id to an empty one [MQTT-3.1.3-6, 3.1.3-7]", async () => {
    const raw = await rawClient(version);
    const connack = await raw.connect({ clientId: "", clean: true });
    // A second client without an id gets another one: it neither takes over the first nor shares its session.
    const other = await rawClient(version);
    const otherConnack = await other.connect({ clientId: "", clean: true });
    if (version === 5) {
      expect([connack.reasonCode, otherConnack.reasonCode]).toEqual([0, 0]);
      expect(connack.properties!.assignedClientIdentifier).toMatch(/^auto-/);
      expect(otherConnack.properties!.assignedClientIdentifier).not.toBe(connack.properties!.assignedClientIdentifier);
    } else {
      expect([connack.returnCode, otherConnack.returnCode]).toEqual([0, 0]);
    }
    await raw.roundTrip();
    await other.roundTrip();
    expect([raw.closed, other.closed]).toEqual([false, false]);
    raw.close();
    other.close();
  });

  if (version === 5) {
    it("the Assigned Client Identifier is the session's id: a reconnect with it resumes the session [MQTT-3.1.3-7]", async () => {
      const raw = await rawClient(5);
      const connack = await raw.connect({ clientId: "", clean: true, properties: { sessionExpiryInterval: 300 } });
      const clientId = connack.properties!.assignedClientIdentifier;
      raw.close();
      const again = await rawClient(5);
      const resumed = await again.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
      expect([resumed.reasonCode, resumed.sessionPresent]).toEqual([0, true]);
      again.close();
    });
  }

  it("closes a connection whose first packet is not CONNECT [MQTT-3.1.0-1] [MQTT311-3.1.0-1]", async () => {
    const raw = await rawClient(version);
    raw.send({ cmd: "pingreq" });
    await raw.waitClosed();
    expect(raw.all("pingresp")).toHaveLength(0);
  });

  it("closes a connection that sends no CONNECT in time", async () => {
    const raw = await rawClient(version);
    await raw.waitClosed(5000);
  });

  it("treats a second CONNECT as a protocol error [MQTT-3.1.0-2, 4.13.1-1] [MQTT311-3.1.0-2]", async () => {
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid() });
    raw.send({ cmd: "connect", protocolVersion: version, clientId: uid(), clean: true, keepalive: 60 });
    if (version === 5) expect((await raw.next("disconnect")).reasonCode).toBe(0x82);
    await raw.waitClosed();
  });

  it("closes the connection on a text frame [MQTT-6.0.0-1] [MQTT311-6.0.0-1]", async () => {
    const { default: WebSocket } = await import("ws");
    const { brokerUrl } = await import("../support/clients");
    const ws = new WebSocket(brokerUrl(), "mqtt");
    await new Promise((r) => ws.once("open", r));
    ws.send("hello");
    await new Promise((r) => ws.once("close", r));
  });
});

describe("CONNECT refusals", () => {
  it("refuses an empty client id without clean session in 3.1.1 with return code 0x02 [MQTT311-3.1.3-8, 3.2.2-4, 3.2.2-5]", async () => {
    const raw = await rawClient(4);
    // CONNECT 3.1.1, CleanSession=0, empty client id (MQTT.js and mqtt-packet refuse to build it)
    raw.sendBytes([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00]);
    const connack = await raw.next("connack");
    expect([connack.returnCode, connack.sessionPresent]).toEqual([2, false]); // [MQTT311-3.2.2-4]
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });

  it("refuses an unsupported protocol level with 0x84 [MQTT-3.1.2-2, 3.2.2-7] [MQTT311-3.1.2-2]", async () => {
    const raw = await rawClient(5);
    // CONNECT, protocol name MQTT, level 6
    raw.sendBytes([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x06, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x01, 0x61]);
    const connack = await raw.next("connack");
    expect([connack.reasonCode, connack.sessionPresent]).toEqual([0x84, false]);
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });

  it("refuses protocol level 2 under the name MQTT with return code 0x01 and closes [MQTT311-3.1.2-2]", async () => {
    const raw = await rawClient(4);
    // CONNECT, protocol name MQTT, level 2 (below 3.1.1: answered as 3.1.1 answers it)
    raw.sendBytes([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x02, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x61]);
    const connack = await raw.next("connack");
    expect([connack.returnCode, connack.sessionPresent]).toEqual([0x01, false]);
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });

  it("accepts MQTT 3.1 (MQIsdp, level 3) clients", async () => {
    const raw = await rawClient(3);
    const connack = await raw.connect({ clientId: "v31client", protocolId: "MQIsdp", protocolVersion: 3 });
    expect(connack.returnCode).toBe(0);
    raw.close();
  });

  it("refuses an invalid will topic in v5 with 0x90 [MQTT-3.1.4-1, 3.2.2-6]", async () => {
    const raw = await rawClient(5);
    const connack = await raw.connect({ clientId: uid(), will: { topic: "a/#", payload: Buffer.from("x") } });
    expect([connack.reasonCode, connack.sessionPresent]).toEqual([0x90, false]); // [MQTT-3.2.2-6]
    await raw.waitClosed(REFUSAL_CLOSE_MS);
  });
});

describe("a connect storm", () => {
  /** Clients opening their WebSocket at the same moment, as after a deploy (CONNECT_TIMEOUT_MS is 1,500 here). */
  const STORM = 200;

  it("answers CONNACK to every client of a storm, none closed for a CONNECT the gateway had not read", async () => {
    // Every socket is open before any CONNECT is sent: the first upgrades' timeouts have run longest.
    const clients = await Promise.all(Array.from({ length: STORM }, () => rawClient(4)));
    const outcomes = await Promise.all(
      clients.map(async (raw) => {
        raw.send({
          cmd: "connect",
          protocolVersion: 4,
          protocolId: "MQTT",
          clean: true,
          keepalive: 60,
          clientId: uid(),
        });
        await raw.until(() => raw.all("connack").length > 0 || raw.closed, 60000, "CONNACK or close");
        const connack = raw.all("connack")[0];
        return connack ? `CONNACK ${connack.returnCode}` : "closed before CONNACK";
      }),
    );
    clients.forEach((raw) => raw.close());
    expect(outcomes.filter((o) => o !== "CONNACK 0")).toEqual([]);
  }, 90000);
});
