/**
 * A client's last packets before its connection ends are handled before the end: a PUBACK sent
 * immediately before DISCONNECT, or before the WebSocket closes, is honoured (the acknowledged
 * message is not sent again when the session resumes [MQTT-4.3.2-3]), and a last QoS 0 PUBLISH is
 * routed. Repeated, because the bugs these guard against are ordering races under workerd: frames
 * overtaking each other, and the internal socket's close overtaking frames sent before it
 * (protocol/internal-order.ts, protocol/internal-close.ts).
 */
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { SessionSockets } from "../../src/session/session-sockets";
import type { RawClient } from "../support/raw-client";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

/**
 * 20 rounds: a subscriber with a persistent session receives a QoS 1 message, acknowledges it and
 * ends its connection with `end`; on resumption, nothing is sent again.
 */
async function ackThenEnd(
  name: string,
  end: (client: RawClient) => void,
  { rounds = 20, beforePublish }: { rounds?: number; beforePublish?: (clientId: string) => Promise<void> } = {},
): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const clientId = uid(name);
    const topic = `${name}/${clientId}`;
    const sub = await rawClient(5);
    await sub.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    await sub.subscribe(topic, 1);
    const pub = await rawClient(5);
    await pub.connect({ clientId: uid(`${name}-pub`) });
    await beforePublish?.(clientId);
    pub.send({ cmd: "publish", topic, payload: Buffer.from("once"), qos: 1, messageId: 1 });
    const got = await sub.next("publish");
    sub.send({ cmd: "puback", messageId: got.messageId });
    end(sub);
    await sub.waitClosed();
    await pub.next("puback");
    pub.close();
    const again = await rawClient(5);
    const connack = await again.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(connack.sessionPresent).toBe(true);
    // a round trip through the session, so anything it would resend has been sent
    await again.subscribe(`${topic}/sync`, 0);
    expect(
      again.all("publish").map((p) => p.payload.toString()),
      `round ${round}`,
    ).toEqual([]);
    again.send({ cmd: "disconnect", properties: { sessionExpiryInterval: 0 } });
    await again.waitClosed();
  }
}

describe("a client's last packets before its connection ends", () => {
  it("does not resend an acknowledged message on resumption (20 rounds) [MQTT-4.3.2-3]", async () => {
    await ackThenEnd("ackdisc", (sub) => sub.send({ cmd: "disconnect" }));
  });

  // The gateway holds a client's acknowledgement for the end of its turn (src/gateway/burst.ts), and
  // the internal socket's close can overtake the frames sent before it: the session must still
  // handle the acknowledgement before it ends the connection.
  it("does not resend a message acknowledged just before the WebSocket closed, without DISCONNECT (20 rounds) [MQTT-4.3.2-3]", async () => {
    await ackThenEnd("ackclose", (sub) => sub.close());
  });

  // An idle subscriber's Session object hibernates: it wakes for the delivery with nothing of the
  // connection in memory but the socket's attachment. Simulated by a fresh SessionSockets over the
  // same sockets (what a wake builds). 40 rounds: when a close in such a wake ended the connection at
  // once, the message was sent again in 7 of 60.
  it("does not resend a message acknowledged just before the WebSocket closed, after the session hibernated (40 rounds) [MQTT-4.3.2-3]", async () => {
    const wake = (clientId: string) =>
      runInDurableObject(env.SESSION.get(env.SESSION.idFromName(clientId)), (instance, state) => {
        (instance as unknown as { sockets: SessionSockets }).sockets = new SessionSockets(() => state.getWebSockets());
      });
    await ackThenEnd("ackwake", (sub) => sub.close(), { rounds: 40, beforePublish: wake });
  });

  // The same end of a connection, for a client's last PUBLISH: QoS 0 has no second chance.
  it("routes a QoS 0 PUBLISH sent just before the WebSocket closed (20 rounds)", async () => {
    const topic = `lastpub/${uid("t")}`;
    const sub = await rawClient(5);
    await sub.connect({ clientId: uid("lastpub-sub") });
    await sub.subscribe(topic, 0);
    for (let round = 0; round < 20; round++) {
      const pub = await rawClient(5);
      await pub.connect({ clientId: uid("lastpub") });
      pub.send({ cmd: "publish", topic, payload: Buffer.from(`m${round}`), qos: 0 });
      pub.close();
      await pub.waitClosed();
      await sub.until(() => sub.all("publish").length > round, 5000, `publish of round ${round}`);
    }
    expect(sub.all("publish").map((p) => p.payload.toString())).toEqual(
      Array.from({ length: 20 }, (_, round) => `m${round}`),
    );
    sub.close();
  });
});
