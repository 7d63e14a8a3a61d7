// The least a connect can cost on this runtime with one Durable Object per client, for
// bench/connect-floor.mjs. The Worker accepts the client's WebSocket and, on its first message (the
// CONNECT), opens a WebSocket to a new SQLite-backed Durable Object, as the broker's gateway opens the
// client's Session object; the object answers every message with a CONNACK (3.1.1, accepted) and
// touches no storage. What the broker does on top (parsing CONNECT, authentication, the session's
// state, the registry's report, logging) is left out: what remains is the runtime's part.
// `/mqtt?at=kv`: the same with an object on key-value storage; `/mqtt?at=worker`: the Worker answers
// the CONNECT itself, with no object (the upgrade alone).
import { DurableObject } from "cloudflare:workers";

const CONNACK = new Uint8Array([0x20, 0x02, 0x00, 0x00]);

export class FloorSession extends DurableObject {
  async fetch() {
    const [outer, inner] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(inner);
    return new Response(null, { status: 101, webSocket: outer });
  }

  webSocketMessage(ws) {
    ws.send(CONNACK);
  }

  webSocketClose(ws, code) {
    try {
      ws.close(code === 1005 ? 1000 : code, "closed");
    } catch {
      // already closed
    }
  }
}

/** The same object on key-value storage (the migration's `new_classes`). */
export class FloorSessionKv extends FloorSession {}

export default {
  async fetch(request, env) {
    if (request.headers.get("Upgrade") !== "websocket") return new Response("ok");
    const [client, server] = Object.values(new WebSocketPair());
    server.binaryType = "arraybuffer"; // newer compatibility dates deliver Blobs by default
    server.accept();
    const at = new URL(request.url).searchParams.get("at");
    if (at === "worker") server.addEventListener("message", () => server.send(CONNACK));
    const namespace = at === "kv" ? env.SESSION_KV : env.SESSION;
    /** @type {WebSocket | undefined} */
    let session;
    /** @type {Promise<WebSocket> | undefined} */
    let opening;
    server.addEventListener("message", async (event) => {
      if (at === "worker") return;
      opening ??= (async () => {
        const stub = namespace.get(namespace.idFromName(crypto.randomUUID()));
        const response = await stub.fetch("https://session.internal/connect", { headers: { Upgrade: "websocket" } });
        const socket = response.webSocket;
        socket.binaryType = "arraybuffer";
        socket.accept();
        socket.addEventListener("message", (e) => server.send(e.data));
        socket.addEventListener("close", () => server.close(1000, "session closed"));
        return socket;
      })();
      session ??= await opening;
      session.send(event.data);
    });
    server.addEventListener("close", () => session?.close(1000, "client closed"));
    const protocol = request.headers.get("Sec-WebSocket-Protocol")?.split(",")[0]?.trim();
    const headers = protocol ? { "Sec-WebSocket-Protocol": protocol } : undefined;
    return new Response(null, { status: 101, webSocket: client, headers });
  },
};
