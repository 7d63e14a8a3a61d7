import type { IConnectPacket } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { sleep, until } from "../support/until";
import { E2E_ADMIN_TOKEN } from "./global-setup";
import { brokerHttp, closeAll, connect, rawClient, recorder } from "../support/clients";
import { uid } from "../support/ids";

afterEach(closeAll);

async function watcher(version: 4 | 5, topic: string) {
  const w = await connect(version);
  const rec = recorder(w);
  await w.subscribeAsync(topic, { qos: 1 });
  return rec;
}

/** Whether the admin API reports the client's session as not connected. */
async function offline(clientId: string): Promise<boolean> {
  const res = await fetch(`${brokerHttp()}/api/v1/clients/${encodeURIComponent(clientId)}`, {
    headers: { authorization: `Bearer ${E2E_ADMIN_TOKEN}` },
  });
  return ((await res.json()) as { connected?: boolean }).connected === false;
}

describe.each([4, 5] as const)("last will, MQTT v%i", (version) => {
  const will = (topic: string) => ({ topic, payload: Buffer.from("gone"), qos: 1 as const, retain: false });

  it("is published when the network connection drops [MQTT-3.1.2-7, 3.1.2-8, 3.1.2-14] [MQTT311-3.1.2-8, 3.1.2-16]", async () => {
    const topic = `${uid("will")}/status`;
    const rec = await watcher(version, topic);
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), will: will(topic) });
    raw.close(); // abrupt: no DISCONNECT
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("gone");
    // Will Retain 0: published non-retained, so a later subscriber is given nothing retained; the
    // control message published after it subscribes is the first thing it gets
    const late = await rawClient(version);
    await late.connect({ clientId: uid() });
    await late.subscribe(topic, 1);
    const pub = await connect(version);
    await pub.publishAsync(topic, "control", { qos: 1 });
    const first = await late.next("publish");
    expect([first.payload.toString(), first.retain]).toEqual(["control", false]);
  });

  it("is not published after a normal DISCONNECT [MQTT-3.1.2-10, 3.14.4-3] [MQTT311-3.1.2-10, 3.14.4-3]", async () => {
    const topic = `${uid("will")}/status`;
    const rec = await watcher(version, topic);
    const clientId = uid();
    const raw = await rawClient(version);
    await raw.connect({ clientId, will: will(topic) });
    raw.send({ cmd: "disconnect" });
    await raw.waitClosed();
    // The same client id reaches the same Session object, which would have published the will
    // first: its control message on the will topic follows the will along the same path.
    const again = await connect(version, { clientId });
    await again.publishAsync(topic, "control", { qos: 1 });
    await rec.waitFor(1);
    expect(rec.messages.map((m) => m.payload)).toEqual(["control"]);
  });

  it("is published when the keep-alive expires [MQTT-3.1.2-22] [MQTT311-3.1.2-24]", async () => {
    const topic = `${uid("will")}/ka`;
    const rec = await watcher(version, topic);
    const raw = await rawClient(version);
    // The broker's clock starts when CONNECT arrives: between these two instants
    const sent = Date.now();
    await raw.connect({ clientId: uid(), keepalive: 1, will: will(topic) });
    const acknowledged = Date.now();
    await raw.waitClosed(5000);
    // [MQTT-3.1.2-22] closed at 1.5 x Keep Alive, not earlier and not later (1 s of slack for a loaded machine)
    expect(Date.now() - sent).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - acknowledged).toBeLessThan(2500);
    if (version === 5) expect(raw.all("disconnect")[0]?.reasonCode).toBe(0x8d);
    await rec.waitFor(1);
  });

  it("is published after a protocol error", async () => {
    const topic = `${uid("will")}/err`;
    const rec = await watcher(version, topic);
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), will: will(topic) });
    raw.send({ cmd: "publish", topic: "bad/#", payload: Buffer.from("x"), qos: 0 });
    await raw.waitClosed();
    await rec.waitFor(1);
  });

  it("is published with retain when asked [MQTT-3.1.2-15] [MQTT311-3.1.2-17]", async () => {
    const topic = `${uid("will")}/retained`;
    const published = await watcher(version, topic);
    const raw = await rawClient(version);
    await raw.connect({ clientId: uid(), will: { ...will(topic), retain: true } });
    raw.close();
    await published.waitFor(1); // the will is out, so stored as retained
    const late = await connect(version);
    const rec = recorder(late);
    await late.subscribeAsync(topic, { qos: 1 });
    const [m] = await rec.waitFor(1);
    expect(m.packet.retain).toBe(true);
  });
});

describe("last will, MQTT v5 specifics", () => {
  it("DISCONNECT with 0x04 publishes the will", async () => {
    const topic = `${uid("will")}/04`;
    const rec = await watcher(5, topic);
    const raw = await rawClient(5);
    await raw.connect({ clientId: uid(), will: { topic, payload: Buffer.from("bye"), qos: 1 } });
    raw.send({ cmd: "disconnect", reasonCode: 0x04 });
    await rec.waitFor(1);
  });

  it("a reconnect within the will delay cancels the will [MQTT-3.1.3-9]", async () => {
    const topic = `${uid("will")}/delay`;
    const rec = await watcher(5, topic);
    const clientId = uid();
    const opts: Partial<IConnectPacket> = {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic, payload: Buffer.from("late"), qos: 1, properties: { willDelayInterval: 2 } },
    };
    const raw = await rawClient(5);
    await raw.connect(opts);
    raw.close();
    // Reconnect only once the session has seen the drop (sooner would be a takeover).
    await until(() => offline(clientId), "the session to see the drop");
    const back = await rawClient(5);
    await back.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    await sleep(2500); // the premise: the 2 s will delay passes
    // A control from the same session on the will topic follows a will published by then.
    back.send({ cmd: "publish", topic, payload: Buffer.from("control"), qos: 1, messageId: 1 });
    await rec.waitFor(1);
    expect(rec.messages.map((m) => m.payload)).toEqual(["control"]);
    back.close();
  });

  it("a delayed will is published once the delay passes", async () => {
    const topic = `${uid("will")}/delayed`;
    const rec = await watcher(5, topic);
    const raw = await rawClient(5);
    await raw.connect({
      clientId: uid(),
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic, payload: Buffer.from("late"), qos: 1, properties: { willDelayInterval: 1 } },
    });
    const closedAt = Date.now();
    raw.close();
    await rec.waitFor(1, 6000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(900);
  });
});
