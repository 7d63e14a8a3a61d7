// The reference broker for `npm run bench`: Aedes (from npm) over WebSocket with `ws`, in its own process.
import { Aedes } from "aedes";
import { WebSocketServer, createWebSocketStream } from "ws";

const port = Number(process.argv[2]);
const aedes = await Aedes.createBroker();
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has("mqtt") ? "mqtt" : false),
});
wss.on("connection", (ws) => aedes.handle(createWebSocketStream(ws)));
wss.on("listening", () => console.log("ready"));

// `npm run bench` asks for the JS heap in use (after a collection) to measure idle memory per connection.
process.on("message", (msg) => {
  if (msg !== "heap") return;
  globalThis.gc?.();
  process.send({ heapUsedKb: process.memoryUsage().heapUsed / 1024 });
});
