/**
 * The dashboard's script, served as /dashboard/app.js (same origin: the CSP allows no inline script).
 * It polls the admin API for clients, subscriptions, retained topics and metrics (message rates from
 * counter differences), and carries a small MQTT 3.1.1-over-WebSocket client (CONNECT, SUBSCRIBE,
 * PUBLISH QoS 0, PINGREQ) for trying things by hand.
 *
 * Every string it shows came from a client of the broker (client ids, usernames, topics, payloads)
 * and is hostile: it reaches the page only as DOM text (createElement + textContent), never through
 * innerHTML or an HTML string. The only thing interpolated below is a constant header name.
 */
import { CSRF_HEADER } from "../api/cross-site";

export const DASHBOARD_SCRIPT = String.raw`(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const VERSIONS = { 3: "3.1", 4: "3.1.1", 5: "5.0" };
  const sum = (m) => Object.values(m).reduce((a, b) => a + b, 0);

  /** A new element holding the given children: nodes as they are, anything else as text. */
  function el(tag, ...children) {
    const node = document.createElement(tag);
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
    return node;
  }
  const row = (...cells) => el("tr", ...cells.map((c) => el("td", c)));
  const fill = (id, rows) => $(id).replaceChildren(...rows);

  function api(path, options = {}) {
    // The header proves the call comes from this page: a cross-site form cannot send it (src/api/cross-site.ts).
    const headers = { ${JSON.stringify(CSRF_HEADER)}: "dashboard" };
    return fetch(path, { credentials: "same-origin", ...options, headers }).then((r) => {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  /** The query-string form reaches every client id, "." and ".." included (a path segment cannot). */
  function disconnectButton(clientId) {
    const button = el("button", "disconnect");
    button.type = "button";
    button.dataset.kick = clientId;
    button.addEventListener("click", () => {
      api("/api/v1/client/disconnect?clientId=" + encodeURIComponent(clientId), { method: "POST" }).then(refresh, refresh);
    });
    return button;
  }

  let last = null;
  function showMetrics(m) {
    const now = Date.now();
    $("s-connected").textContent = m.connected;
    $("s-received").textContent = sum(m.received);
    $("s-delivered").textContent = sum(m.delivered);
    $("s-dropped").textContent = sum(m.dropped);
    $("s-retained").textContent = m.retainedMessages;
    $("s-subs").textContent = m.subscriptionEntries;
    $("s-deep").textContent = m.deepQueues;
    if (last) {
      const dt = (now - last.at) / 1000;
      $("s-in-rate").textContent = ((sum(m.received) - last.received) / dt).toFixed(1);
      $("s-out-rate").textContent = ((sum(m.delivered) - last.delivered) / dt).toFixed(1);
    }
    last = { at: now, received: sum(m.received), delivered: sum(m.delivered) };
  }

  function refresh() {
    Promise.all([
      api("/api/v1/metrics"),
      api("/api/v1/clients?limit=200"),
      api("/api/v1/subscriptions?limit=200"),
      api("/api/v1/retained?limit=100"),
    ]).then(([metrics, clients, subs, retained]) => {
      showMetrics(metrics);
      fill("clients", clients.clients.map((c) =>
        row(c.clientId, VERSIONS[c.version], c.username, new Date(c.connectedAt).toLocaleTimeString(), disconnectButton(c.clientId))));
      fill("subs", subs.subscriptions.map((s) => row(s.clientId, s.filter, s.qos)));
      fill("retained", retained.retained.map((t) => row(t.topic, t.bytes, t.encoding === "utf8" ? t.payload.slice(0, 60) : "(binary)")));
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }).catch((err) => { $("updated").textContent = String(err.message || err); });
  }
  refresh();
  setInterval(refresh, 2000);

  // --- a small MQTT 3.1.1 client over WebSocket -------------------------------------------
  const enc = new TextEncoder(), dec = new TextDecoder();
  function str(s) { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; }
  function packet(type, body) {
    let len = body.length;
    const head = [type];
    do { const d = len % 128; len = Math.floor(len / 128); head.push(len > 0 ? d | 128 : d); } while (len > 0);
    return new Uint8Array([...head, ...body]);
  }
  let ws = null, buffer = new Uint8Array(0), nextId = 1, ping = null;
  function log(text, cls) {
    const line = el("div", new Date().toLocaleTimeString() + "  " + text);
    if (cls) line.className = cls;
    $("log").prepend(line);
  }
  function onBytes(bytes) {
    const joined = new Uint8Array(buffer.length + bytes.length);
    joined.set(buffer); joined.set(bytes, buffer.length); buffer = joined;
    for (;;) {
      let mult = 1, len = 0, i = 1, d;
      do { if (i >= buffer.length) return; d = buffer[i++]; len += (d & 127) * mult; mult *= 128; } while (d & 128);
      if (buffer.length < i + len) return;
      handle(buffer[0], buffer.subarray(i, i + len));
      buffer = buffer.slice(i + len);
    }
  }
  function handle(first, body) {
    const type = first >> 4;
    if (type === 2) {
      const ok = body[1] === 0;
      log(ok ? "connected" : "refused, return code " + body[1], ok ? "ok" : "bad");
      $("subscribe").disabled = $("publish").disabled = !ok;
    } else if (type === 9) {
      log("subscribed (granted " + Array.from(body.subarray(2)).join(", ") + ")", "ok");
    } else if (type === 3) {
      const tlen = (body[0] << 8) | body[1], topic = dec.decode(body.subarray(2, 2 + tlen));
      const qos = (first >> 1) & 3, start = 2 + tlen + (qos ? 2 : 0);
      if (qos === 1) ws.send(packet(0x40, [body[2 + tlen], body[3 + tlen]]));
      log("message on " + topic + ": " + dec.decode(body.subarray(start)));
    }
  }
  $("url").value = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/mqtt";
  $("client-id").value = "dashboard-" + Math.random().toString(36).slice(2, 8);
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (ws) ws.close();
    ws = new WebSocket($("url").value, "mqtt");
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.send(packet(0x10, [...str("MQTT"), 4, 2, 0, 60, ...str($("client-id").value)]));
      ping = setInterval(() => ws.send(new Uint8Array([0xc0, 0])), 30000);
    };
    ws.onmessage = (ev) => onBytes(new Uint8Array(ev.data));
    ws.onclose = () => { clearInterval(ping); log("disconnected", "bad"); $("subscribe").disabled = $("publish").disabled = true; };
  });
  $("sub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = nextId++ % 65535 || nextId++;
    ws.send(packet(0x82, [id >> 8, id & 255, ...str($("sub-topic").value), 1]));
  });
  $("pub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const retain = $("pub-retain").checked ? 1 : 0;
    ws.send(packet(0x30 | retain, [...str($("pub-topic").value), ...enc.encode($("pub-payload").value)]));
    log("published to " + $("pub-topic").value);
  });
})();
`;
