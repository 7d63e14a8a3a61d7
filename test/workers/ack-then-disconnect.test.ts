/**
 * A PUBACK sent immediately before DISCONNECT is honoured: the acknowledged message is not sent
 * again when the session resumes [MQTT-4.3.2-3]. Repeated, because the bug this guards against is
 * an ordering race between the two packets' handling.
 */
import { describe, expect, it } from "vitest";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

describe("acknowledgement then DISCONNECT", () => {
  it("does not resend an acknowledged message on resumption (20 rounds) [MQTT-4.3.2-3]", async () => {
    for (let round = 0; round < 20; round++) {
      const clientId = uid("ackdisc");
      const topic = `ackdisc/${clientId}`;
      const sub = await rawClient(5);
      await sub.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
      await sub.subscribe(topic, 1);
      const pub = await rawClient(5);
      await pub.connect({ clientId: uid("ackdisc-pub") });
      pub.send({ cmd: "publish", topic, payload: Buffer.from("once"), qos: 1, messageId: 1 });
      const got = await sub.next("publish");
      sub.send({ cmd: "puback", messageId: got.messageId });
      sub.send({ cmd: "disconnect" });
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
  });
});
