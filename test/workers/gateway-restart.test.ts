/**
 * What a deploy or restart of the gateway Worker alone does to a connected client's session: the
 * gateway's end of the internal WebSocket goes away without the gateway's own close codes
 * (protocol/internal-close.ts), and the Session object must learn it from the socket (webSocketClose)
 * and end the connection as lost: the will is published [MQTT-3.1.2-8] [MQTT311-3.1.2-8].
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { encodeConnectHeaders, encodeFrame } from "../../src/protocol/internal-frame";
import { RawClient } from "../support/raw-client";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";

/** The internal WebSocket to a client's Session object, opened as the gateway opens it, and a raw client over it. */
async function sessionSocket(clientId: string, version: 4 | 5): Promise<{ raw: RawClient; ws: WebSocket }> {
  const stub = env.SESSION.get(env.SESSION.idFromName(clientId));
  const headers = encodeConnectHeaders({ clientId, assignedClientId: false, version, identity: {} });
  const res = await stub.fetch("https://session.internal/connect", { headers: { Upgrade: "websocket", ...headers } });
  const ws = res.webSocket!;
  ws.binaryType = "arraybuffer";
  ws.accept();
  let seq = 0;
  const raw = new RawClient(
    {
      send: (bytes) => ws.send(encodeFrame(seq++, [bytes])), // each packet in a frame of its own, numbered
      close: () => ws.close(1000),
      onBytes: (cb) => ws.addEventListener("message", (e) => cb(new Uint8Array(e.data as ArrayBuffer))),
      onClose: (cb) => ws.addEventListener("close", cb),
    },
    version,
  );
  return { raw, ws };
}

describe.each([4, 5] as const)("a restart of the gateway alone, MQTT v%i", (version) => {
  it("closes the internal socket: the Session object learns it and publishes the will [MQTT-3.1.2-8] [MQTT311-3.1.2-8]", async () => {
    const topic = `${uid("gw-restart")}/status`;
    const watcher = await rawClient(version);
    await watcher.connect({ clientId: uid("watch") });
    await watcher.subscribe(topic, 1);
    const clientId = uid("device");
    const { raw, ws } = await sessionSocket(clientId, version);
    const connack = await raw.connect({ clientId, will: { topic, payload: Buffer.from("gone"), qos: 1 } });
    expect(connack.cmd).toBe("connack");
    ws.close(1001, "going away"); // what an ending Worker's runtime says; not a gateway close code
    const will = await watcher.next("publish", 10000);
    expect(will.payload.toString()).toBe("gone");
    watcher.close();
  });
});
