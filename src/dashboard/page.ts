/**
 * The dashboard page, served by the Worker at /dashboard (admin token: Basic authentication in a
 * browser). Everything is in this one page: no external fetches. It polls the admin API for clients,
 * subscriptions, retained topics and metrics (message rates from counter differences), and carries a
 * small MQTT 3.1.1-over-WebSocket client (CONNECT, SUBSCRIBE, PUBLISH QoS 0, PINGREQ) for trying
 * things by hand.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MQTT broker dashboard</title>
<style>
  :root { --bg: #0f172a; --panel: #1e293b; --text: #e2e8f0; --muted: #94a3b8; --accent: #f59e0b; --ok: #22c55e; --bad: #ef4444; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid #334155; }
  header h1 { font-size: 18px; margin: 0; }
  header .muted { color: var(--muted); }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: var(--panel); border-radius: 8px; padding: 12px 16px; overflow: auto; max-height: 420px; }
  section h2 { font-size: 14px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 8px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #334155; white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; }
  .stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; }
  .stat { background: #0b1220; border-radius: 6px; padding: 8px; }
  .stat b { display: block; font-size: 22px; color: var(--accent); }
  .stat span { color: var(--muted); font-size: 12px; }
  form { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }
  input, select, button { font: inherit; padding: 4px 8px; border-radius: 4px; border: 1px solid #475569; background: #0b1220; color: var(--text); }
  input { flex: 1; min-width: 120px; }
  button { background: var(--accent); color: #111; border: 0; cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  #log { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; }
  .ok { color: var(--ok); } .bad { color: var(--bad); }
</style>
</head>
<body>
<header><h1>MQTT broker</h1><span class="muted" id="updated">loading...</span></header>
<main>
  <section>
    <h2>Traffic</h2>
    <div class="stats">
      <div class="stat"><b id="s-connected">-</b><span>clients connected</span></div>
      <div class="stat"><b id="s-in-rate">-</b><span>messages in / s</span></div>
      <div class="stat"><b id="s-out-rate">-</b><span>messages out / s</span></div>
      <div class="stat"><b id="s-received">-</b><span>messages received</span></div>
      <div class="stat"><b id="s-delivered">-</b><span>copies delivered</span></div>
      <div class="stat"><b id="s-dropped">-</b><span>dropped</span></div>
      <div class="stat"><b id="s-retained">-</b><span>retained messages</span></div>
      <div class="stat"><b id="s-subs">-</b><span>subscription entries</span></div>
      <div class="stat"><b id="s-deep">-</b><span>deep queues</span></div>
    </div>
  </section>
  <section>
    <h2>Connected clients</h2>
    <table><thead><tr><th>client id</th><th>protocol</th><th>user</th><th>since</th><th></th></tr></thead><tbody id="clients"></tbody></table>
  </section>
  <section>
    <h2>Subscriptions</h2>
    <table><thead><tr><th>client id</th><th>filter</th><th>QoS</th></tr></thead><tbody id="subs"></tbody></table>
  </section>
  <section>
    <h2>Retained topics</h2>
    <table><thead><tr><th>topic</th><th>bytes</th><th>payload</th></tr></thead><tbody id="retained"></tbody></table>
  </section>
  <section>
    <h2>Try it: an MQTT client in this page</h2>
    <form id="connect-form"><input id="url" aria-label="broker URL"><input id="client-id" aria-label="client id" placeholder="client id"><button id="connect">Connect</button></form>
    <form id="sub-form"><input id="sub-topic" aria-label="filter" placeholder="filter, e.g. demo/#"><button id="subscribe" disabled>Subscribe</button></form>
    <form id="pub-form"><input id="pub-topic" aria-label="topic" placeholder="topic"><input id="pub-payload" aria-label="message" placeholder="message"><label><input type="checkbox" id="pub-retain" style="flex:0;min-width:0"> retain</label><button id="publish" disabled>Publish</button></form>
    <div id="log"></div>
  </section>
</main>
<script>
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var esc = function (s) { return String(s == null ? "" : s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); };
  var VERSIONS = { 3: "3.1", 4: "3.1.1", 5: "5.0" };
  var sum = function (m) { var t = 0; for (var k in m) t += m[k]; return t; };

  function api(path, options) {
    return fetch(path, Object.assign({ credentials: "same-origin" }, options || {})).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  var last = null;
  function refresh() {
    Promise.all([
      api("/api/v1/metrics"),
      api("/api/v1/clients?limit=200"),
      api("/api/v1/subscriptions?limit=200"),
      api("/api/v1/retained?limit=100"),
    ]).then(function (r) {
      var m = r[0], now = Date.now();
      $("s-connected").textContent = m.connected;
      $("s-received").textContent = sum(m.received);
      $("s-delivered").textContent = sum(m.delivered);
      $("s-dropped").textContent = sum(m.dropped);
      $("s-retained").textContent = m.retainedMessages;
      $("s-subs").textContent = m.subscriptionEntries;
      $("s-deep").textContent = m.deepQueues;
      if (last) {
        var dt = (now - last.at) / 1000;
        $("s-in-rate").textContent = ((sum(m.received) - last.received) / dt).toFixed(1);
        $("s-out-rate").textContent = ((sum(m.delivered) - last.delivered) / dt).toFixed(1);
      }
      last = { at: now, received: sum(m.received), delivered: sum(m.delivered) };
      $("clients").innerHTML = r[1].clients.map(function (c) {
        return "<tr><td>" + esc(c.clientId) + "</td><td>" + VERSIONS[c.version] + "</td><td>" + esc(c.username || "") +
          "</td><td>" + esc(new Date(c.connectedAt).toLocaleTimeString()) + "</td><td><button data-kick='" + esc(c.clientId) + "'>disconnect</button></td></tr>";
      }).join("");
      $("subs").innerHTML = r[2].subscriptions.map(function (s) {
        return "<tr><td>" + esc(s.clientId) + "</td><td>" + esc(s.filter) + "</td><td>" + s.qos + "</td></tr>";
      }).join("");
      $("retained").innerHTML = r[3].retained.map(function (t) {
        return "<tr><td>" + esc(t.topic) + "</td><td>" + t.bytes + "</td><td>" + esc(t.encoding === "utf8" ? t.payload.slice(0, 60) : "(binary)") + "</td></tr>";
      }).join("");
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }).catch(function (err) { $("updated").textContent = String(err.message || err); });
  }
  document.addEventListener("click", function (e) {
    var id = e.target && e.target.getAttribute && e.target.getAttribute("data-kick");
    if (id) api("/api/v1/clients/" + encodeURIComponent(id) + "/disconnect", { method: "POST" }).then(refresh, refresh);
  });
  refresh();
  setInterval(refresh, 2000);

  // --- a small MQTT 3.1.1 client over WebSocket -------------------------------------------
  var enc = new TextEncoder(), dec = new TextDecoder();
  function str(s) { var b = enc.encode(s); return [b.length >> 8, b.length & 255].concat(Array.from(b)); }
  function packet(type, body) {
    var len = body.length, head = [type];
    do { var d = len % 128; len = Math.floor(len / 128); head.push(len > 0 ? d | 128 : d); } while (len > 0);
    return new Uint8Array(head.concat(body));
  }
  var ws = null, buffer = new Uint8Array(0), nextId = 1, ping = null;
  function log(text, cls) {
    var line = document.createElement("div");
    if (cls) line.className = cls;
    line.textContent = new Date().toLocaleTimeString() + "  " + text;
    $("log").prepend(line);
  }
  function onBytes(bytes) {
    var joined = new Uint8Array(buffer.length + bytes.length);
    joined.set(buffer); joined.set(bytes, buffer.length); buffer = joined;
    for (;;) {
      var mult = 1, len = 0, i = 1, d;
      do { if (i >= buffer.length) return; d = buffer[i++]; len += (d & 127) * mult; mult *= 128; } while (d & 128);
      if (buffer.length < i + len) return;
      handle(buffer[0], buffer.subarray(i, i + len));
      buffer = buffer.slice(i + len);
    }
  }
  function handle(first, body) {
    var type = first >> 4;
    if (type === 2) {
      var ok = body[1] === 0;
      log(ok ? "connected" : "refused, return code " + body[1], ok ? "ok" : "bad");
      $("subscribe").disabled = $("publish").disabled = !ok;
    } else if (type === 9) {
      log("subscribed (granted " + Array.from(body.subarray(2)).join(", ") + ")", "ok");
    } else if (type === 3) {
      var tlen = (body[0] << 8) | body[1], topic = dec.decode(body.subarray(2, 2 + tlen));
      var qos = (first >> 1) & 3, start = 2 + tlen + (qos ? 2 : 0);
      if (qos === 1) ws.send(packet(0x40, [body[2 + tlen], body[3 + tlen]]));
      log("message on " + topic + ": " + dec.decode(body.subarray(start)));
    }
  }
  $("url").value = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/mqtt";
  $("client-id").value = "dashboard-" + Math.random().toString(36).slice(2, 8);
  $("connect-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (ws) ws.close();
    ws = new WebSocket($("url").value, "mqtt");
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      ws.send(packet(0x10, str("MQTT").concat([4, 2, 0, 60], str($("client-id").value))));
      ping = setInterval(function () { ws.send(new Uint8Array([0xc0, 0])); }, 30000);
    };
    ws.onmessage = function (ev) { onBytes(new Uint8Array(ev.data)); };
    ws.onclose = function () { clearInterval(ping); log("disconnected", "bad"); $("subscribe").disabled = $("publish").disabled = true; };
  });
  $("sub-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var id = nextId++ % 65535 || nextId++;
    ws.send(packet(0x82, [id >> 8, id & 255].concat(str($("sub-topic").value), [1])));
  });
  $("pub-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var retain = $("pub-retain").checked ? 1 : 0;
    ws.send(packet(0x30 | retain, str($("pub-topic").value).concat(Array.from(enc.encode($("pub-payload").value)))));
    log("published to " + $("pub-topic").value);
  });
})();
</script>
</body>
</html>
`;
