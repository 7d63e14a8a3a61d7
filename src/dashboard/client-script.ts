/**
 * The dashboard's script, served as /dashboard/app.js (same origin: the CSP allows no inline script).
 * Every 2 s it makes one call, GET /api/v1/overview (figures, a page of clients, subscriptions,
 * retained messages: one call per registry and topic shard on the server), plus one for the client
 * whose page is open. It keeps the last hour of samples and draws the charts as SVG from them. The
 * in-page MQTT client is MQTT.js's browser bundle (window.mqtt, /dashboard/mqtt.min.js).
 *
 * Every string it shows came from a client of the broker (client ids, usernames, topics, payloads)
 * or from a remote broker (a bridge's last error holds its Reason String) and is hostile: it reaches the page only as DOM text (createElement + textContent), never through
 * innerHTML or an HTML string. Attributes it sets hold numbers, constants or data- values.
 */
import { CSRF_HEADER } from "../http/cross-site";

export const DASHBOARD_SCRIPT = String.raw`(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const VERSIONS = { 3: "3.1", 4: "3.1.1", 5: "5.0" };
  const PAGE = 50, HOUR_MS = 3600 * 1000, REFRESH_MS = 2000;
  const sum = (m) => Object.values(m).reduce((a, b) => a + b, 0);
  const q = encodeURIComponent;

  /** A new element holding the given children: nodes as they are, anything else as text. */
  function el(tag, ...children) {
    const node = document.createElement(tag);
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
    return node;
  }
  /** A row of cells; each cell is labelled with its column's name for the narrow-screen card layout. */
  function rowFor(tbody, cells) {
    const names = Array.from(tbody.closest("table").querySelectorAll("th"), (th) => th.textContent);
    return el("tr", ...cells.map((c, i) => {
      const td = el("td", c);
      if (names[i]) td.dataset.label = names[i];
      return td;
    }));
  }
  const fill = (id, rows) => { const body = $(id); body.replaceChildren(...rows.map((cells) => rowFor(body, cells))); };
  function button(text, onClick, cls) {
    const b = el("button", text);
    b.type = "button";
    if (cls) b.className = cls;
    b.addEventListener("click", onClick);
    return b;
  }
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

  function api(path, options = {}) {
    // The header proves the call comes from this page: a cross-site form cannot send it (src/http/cross-site.ts).
    const headers = { ${JSON.stringify(CSRF_HEADER)}: "dashboard" };
    return fetch(path, { credentials: "same-origin", ...options, headers }).then((r) =>
      r.json().catch(() => ({})).then((body) => {
        if (!r.ok) throw new Error(path.split("?")[0] + ": " + (body.error || "HTTP " + r.status));
        return body;
      }));
  }
  function status(text, bad) {
    $("updated").textContent = text;
    $("updated").className = bad ? "bad" : "muted";
  }

  // --- the one call per refresh ------------------------------------------------------------
  const view = { prefix: "", cursors: [""], retained: "#", client: null };
  let refreshing = false;

  function refresh() {
    if (refreshing) return;
    refreshing = true;
    const after = view.cursors[view.cursors.length - 1];
    const url = "/api/v1/overview?limit=" + PAGE + "&prefix=" + q(view.prefix) + "&after=" + q(after) + "&retained=" + q(view.retained);
    const calls = [api(url).then(showOverview)];
    if (view.client !== null) calls.push(refreshClient());
    Promise.all(calls)
      .then(() => status("updated " + new Date().toLocaleTimeString()))
      .catch((err) => status(String(err.message || err), true))
      .finally(() => { refreshing = false; });
  }

  function showOverview(o) {
    showFigures(o.metrics, o.counts);
    sample(o.metrics);
    $("cost").textContent = "Each refresh: " + o.cost.durableObjectCalls + " Durable Object calls" + (view.client !== null ? " + 1 for the open client" : "") + ".";
    showClients(o.clients, o.counts);
    fill("subs", o.subscriptions.subscriptions.map((s) => [s.clientId, s.filter, s.qos]));
    $("subs-count").textContent = o.counts.subscriptions + " subscriptions" + (o.subscriptions.truncated ? ", the first " + o.subscriptions.subscriptions.length + " shown" : "");
    showRetained(o.retained, o.counts);
    showBridges(o.bridges || []);
    showRules(o.metrics.rules);
  }

  // --- rules: each configured rule's counts (names are text, as everything here) ------------
  function showRules(rules) {
    const rows = Object.entries(rules || {});
    $("rules-view").hidden = rows.length === 0;
    fill("rules", rows.map(([name, c]) => [name, c.matched, c.ok, c.failed]));
  }

  function showFigures(m, counts) {
    $("s-connected").textContent = m.connected;
    $("s-received").textContent = sum(m.received);
    $("s-delivered").textContent = sum(m.delivered);
    $("s-dropped").textContent = sum(m.dropped);
    $("s-retained").textContent = counts.retained;
    $("s-retained-note").textContent = counts.dollarRetained ? "+ " + counts.dollarRetained + " under $ topics ($SYS)" : "";
    $("s-subs").textContent = counts.subscriptions;
    $("s-subs-note").textContent = counts.subscriptionIndexEntries + " index entries in the shards";
    $("s-deep").textContent = m.deepQueues;
  }

  // --- clients: search by id prefix, pages by cursor ---------------------------------------
  function showClients(page, counts) {
    fill("clients", page.clients.map((c) => [
      button(c.clientId, () => openClient(c.clientId), "link"),
      VERSIONS[c.version] || c.version, c.username, time(c.connectedAt), disconnectButton(c.clientId),
    ]));
    const matching = view.prefix ? counts.clientsMatching + " of " + counts.connected + " connected clients match" : counts.connected + " connected clients";
    $("clients-count").textContent = matching;
    const first = (view.cursors.length - 1) * PAGE;
    $("clients-page").textContent = page.clients.length ? "rows " + (first + 1) + "-" + (first + page.clients.length) : "no clients";
    $("clients-prev").disabled = view.cursors.length === 1;
    $("clients-next").disabled = !page.next;
    view.next = page.next;
  }

  /** The query-string form reaches every client id, "." and ".." included (a path segment cannot). */
  function disconnectButton(clientId) {
    const b = button("disconnect", () => disconnect(clientId));
    b.dataset.kick = clientId;
    return b;
  }
  function disconnect(clientId) {
    return api("/api/v1/client/disconnect?clientId=" + q(clientId), { method: "POST" }).then(refresh, (e) => { status(e.message, true); refresh(); });
  }

  $("client-search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    view.prefix = $("client-search").value;
    view.cursors = [""];
    refresh();
  });
  $("client-open").addEventListener("click", () => { if ($("client-search").value) openClient($("client-search").value); });
  $("clients-next").addEventListener("click", () => { if (view.next) { view.cursors.push(view.next); refresh(); } });
  $("clients-prev").addEventListener("click", () => { if (view.cursors.length > 1) { view.cursors.pop(); refresh(); } });

  // --- one client's page -------------------------------------------------------------------
  function openClient(clientId) {
    view.client = clientId;
    $("client-view").hidden = false;
    $("client-title").textContent = clientId;
    $("client-view").scrollIntoView();
    refreshClient().catch((e) => status(e.message, true));
  }
  function refreshClient() {
    const clientId = view.client;
    return api("/api/v1/client?clientId=" + q(clientId)).then(
      (s) => { if (view.client === clientId) showClient(s); },
      (e) => { if (view.client === clientId) showNoSession(e); });
  }
  function showClient(s) {
    $("client-status").textContent = s.connected ? "connected since " + time(s.connectedAt) : "offline" + (s.expiresAt ? ", session expires " + new Date(s.expiresAt).toLocaleString() : "");
    const facts = [
      ["protocol", VERSIONS[s.protocolVersion] || s.protocolVersion], ["user", s.username || "(anonymous)"],
      ["address", s.remoteAddress || ""], ["session expiry", s.expiryInterval + " s"],
      ["queued", s.queued], ["in flight", s.inflight], ["dropped (queue full)", s.droppedQueueFull],
    ];
    $("client-info").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
    fill("client-subs", s.subscriptions.map((x) => [x.filter, x.qos,
      [x.noLocal ? "no local" : "", x.retainAsPublished ? "retain as published" : "", x.subscriptionId ? "id " + x.subscriptionId : ""].filter(Boolean).join(", ")]));
    fill("client-outbound", (s.outbound || []).map((m) => [m.topic, m.qos, m.state, m.packetId == null ? "" : m.packetId, m.bytes]));
    const w = s.will;
    $("client-will").textContent = w ? "on " + w.topic + ", QoS " + w.qos + (w.retain ? ", retained" : "") + ", " + w.bytes + " bytes" + (w.delay ? ", after " + w.delay + " s" : "") : "none";
    $("client-disconnect").disabled = !s.connected;
    $("client-delete").disabled = false;
  }
  function showNoSession(e) {
    $("client-status").textContent = e.message;
    for (const id of ["client-info", "client-subs", "client-outbound"]) $(id).replaceChildren();
    $("client-will").textContent = "";
    $("client-disconnect").disabled = $("client-delete").disabled = true;
  }
  $("client-disconnect").addEventListener("click", () => { if (view.client !== null) disconnect(view.client); });
  $("client-delete").addEventListener("click", () => {
    if (view.client === null) return;
    api("/api/v1/session?clientId=" + q(view.client), { method: "DELETE" }).then(refresh, (e) => status(e.message, true));
  });
  $("client-close").addEventListener("click", () => { view.client = null; $("client-view").hidden = true; });

  // --- retained messages: filter, payload view, delete -------------------------------------
  function showRetained(r, counts) {
    fill("retained", r.items.map((t) => [
      t.topic, t.bytes, t.encoding === "utf8" ? t.payload.slice(0, 60) : "(binary)",
      actions(button("view", () => viewPayload(t.topic)), deleteRetainedButton(t.topic)),
    ]));
    const all = r.filter === "#" ? counts.retained + " retained messages" : "matching " + r.filter;
    $("retained-count").textContent = all + (r.truncated ? ", the first " + r.items.length + " shown" : "");
  }
  const actions = (...buttons) => { const span = el("span", ...buttons); span.className = "actions"; return span; };
  function deleteRetainedButton(topic) {
    const b = button("delete", () => {
      // A topic name has no wildcards, so as a filter it matches itself alone.
      api("/api/v1/retained?filter=" + q(topic), { method: "DELETE" }).then(refresh, (e) => status(e.message, true));
    }, "danger");
    b.dataset.deleteRetained = topic;
    return b;
  }
  function viewPayload(topic) {
    api("/api/v1/retained?limit=1&filter=" + q(topic)).then((r) => {
      const m = r.retained[0];
      $("payload-view").hidden = false;
      $("payload-topic").textContent = topic;
      $("payload-text").textContent = !m ? "(no longer retained)" : m.encoding === "utf8" ? m.payload : "base64, " + m.bytes + " bytes:\n" + m.payload;
    }, (e) => status(e.message, true));
  }
  $("payload-close").addEventListener("click", () => { $("payload-view").hidden = true; });
  $("retained-form").addEventListener("submit", (e) => {
    e.preventDefault();
    view.retained = $("retained-filter").value || "#";
    refresh();
  });

  // --- broker bridges (BRIDGES): one row each; the section shows only when there are some ----
  function showBridges(bridges) {
    $("bridges-view").hidden = $("bridges-nav").hidden = bridges.length === 0;
    const dropped = (b) => b.droppedOffline + b.droppedFull + b.droppedExpired + b.droppedRefused;
    const dropNote = (b) => [["offline", b.droppedOffline], ["queue full", b.droppedFull], ["expired", b.droppedExpired],
      ["refused", b.droppedRefused]].filter(([, n]) => n).map(([k, n]) => n + " " + k).join(", ");
    fill("bridges", bridges.map((b) => [
      b.name, b.state, b.lastError, b.queuedMessages + " (" + b.queuedBytes + " bytes)", b.received, b.sent,
      dropped(b) ? dropped(b) + " (" + dropNote(b) + ")" : 0, b.unmapped,
    ]));
    const up = bridges.filter((b) => b.state === "connected").length;
    $("bridges-count").textContent = up + " of " + bridges.length + " connected";
  }

  // --- charts: the last hour, from samples this page keeps ---------------------------------
  const samples = [];
  let last = null;
  function sample(m) {
    const now = Date.now();
    const totals = { received: sum(m.received), delivered: sum(m.delivered), dropped: sum(m.dropped) };
    // A counter that went down (an object restarted) gives no rate for this interval, not a negative one.
    const rate = (k) => (last ? Math.max(0, (totals[k] - last[k]) / ((now - last.at) / 1000)) : 0);
    const s = { at: now, connected: m.connected, in: rate("received"), out: rate("delivered"), drops: rate("dropped") };
    if (last) {
      $("s-in-rate").textContent = s.in.toFixed(1);
      $("s-out-rate").textContent = s.out.toFixed(1);
    }
    last = { at: now, ...totals };
    samples.push(s);
    while (samples.length && samples[0].at < now - HOUR_MS) samples.shift();
    draw("chart-connections", [["connected", ""]], now);
    draw("chart-messages", [["in", ""], ["out", "dashed"]], now);
    draw("chart-drops", [["drops", "bad"]], now);
  }
  const SVG = "http://www.w3.org/2000/svg", W = 600, H = 120;
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }
  /** One polyline per series over the last hour (x: time, y: 0 to the largest value shown). */
  function draw(id, series, now) {
    const max = Math.max(1, ...samples.flatMap((s) => series.map(([k]) => s[k])));
    const x = (at) => ((at - (now - HOUR_MS)) / HOUR_MS * W).toFixed(1);
    const y = (v) => (H - 4 - v / max * (H - 8)).toFixed(1);
    const lines = series.map(([k, cls]) => {
      const line = svg("polyline", { points: samples.map((s) => x(s.at) + "," + y(s[k])).join(" ") });
      line.setAttribute("class", "series " + cls);
      return line;
    });
    const grid = [0.25, 0.5, 0.75].map((f) => svg("line", { x1: 0, x2: W, y1: H * f, y2: H * f, class: "grid" }));
    $(id).replaceChildren(...grid, ...lines);
    $(id + "-max").textContent = "(max " + (Number.isInteger(max) ? max : max.toFixed(1)) + ")";
  }

  refresh();
  setInterval(refresh, REFRESH_MS);

  // --- the in-page MQTT client (MQTT.js) ---------------------------------------------------
  let client = null;
  function log(text, cls) {
    const line = el("div", new Date().toLocaleTimeString() + "  " + text);
    if (cls) line.className = cls;
    $("log").prepend(line);
  }
  const connected = (on) => {
    $("subscribe").disabled = $("publish").disabled = !on;
    $("disconnect").disabled = !client;
  };
  $("url").value = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/mqtt";
  $("client-id").value = "dashboard-" + Math.random().toString(36).slice(2, 8);
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!window.mqtt) return log("MQTT.js did not load (/dashboard/mqtt.min.js)", "bad");
    if (client) client.end(true);
    const version = Number($("protocol").value);
    const c = window.mqtt.connect($("url").value, {
      clientId: $("client-id").value,
      username: $("username").value || undefined,
      password: $("password").value || undefined,
      protocolVersion: version,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      // Its default keep-alive timer runs in a Worker made from a blob: URL, which the CSP refuses.
      timerVariant: "native",
    });
    client = c;
    c.on("connect", () => { log("connected (MQTT " + VERSIONS[version] + ")", "ok"); connected(true); });
    c.on("error", (err) => log("error: " + err.message, "bad"));
    c.on("close", () => { if (client === c) { log("disconnected", "bad"); connected(false); } });
    c.on("message", (topic, payload, packet) => log("message on " + topic + ": " + payload.toString() + " (QoS " + packet.qos + (packet.retain ? ", retained" : "") + ")"));
  });
  $("disconnect").addEventListener("click", () => { if (client) { const c = client; client = null; c.end(); log("disconnected", "bad"); connected(false); } });
  $("sub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    client.subscribe($("sub-topic").value, { qos: Number($("sub-qos").value) }, (err, granted) => {
      if (err) log("subscribe failed: " + err.message, "bad");
      else log("subscribed (granted " + granted.map((g) => g.qos).join(", ") + ")", "ok");
    });
  });
  $("pub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const topic = $("pub-topic").value, qos = Number($("pub-qos").value);
    client.publish(topic, $("pub-payload").value, { qos, retain: $("pub-retain").checked }, (err) => {
      if (err) log("publish failed: " + err.message, "bad");
      else log("published to " + topic + " (QoS " + qos + ")", "ok");
    });
  });
})();
`;
