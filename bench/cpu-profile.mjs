// A CPU profile of the Worker's JavaScript under workerd, taken through the V8 inspector that
// `wrangler dev --inspector-port` exposes (Chrome DevTools protocol: Profiler.start / Profiler.stop).
// The Worker and its Durable Objects run in that one isolate locally, so the profile covers all of it.
import WebSocket from "ws";

/** A Chrome DevTools protocol session with workerd's isolate; `call` gives up after `ms`. */
async function inspectorSession(inspectorPort, ms = 60000) {
  const ws = new WebSocket(`ws://127.0.0.1:${inspectorPort}/ws`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let id = 0;
  const waiting = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data));
    // Any message with the id settles the call: wrangler's inspector proxy echoes Profiler.enable
    // back instead of answering it.
    if (msg.id && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    }
  });
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      const n = ++id;
      waiting.set(n, resolve);
      ws.send(JSON.stringify({ id: n, method, params }));
      setTimeout(() => resolve({ timedOut: method }), ms);
    });
  return { call, close: () => ws.close() };
}

/**
 * The isolate's JS heap in use, in KB, after a full garbage collection. workerd does not answer
 * HeapProfiler.collectGarbage; a heap snapshot collects garbage first, so one is taken (its chunks
 * are ignored).
 */
export async function heapUsedKb(inspectorPort) {
  const session = await inspectorSession(inspectorPort, 60000);
  await session.call("HeapProfiler.enable");
  await session.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  const usage = await session.call("Runtime.getHeapUsage");
  session.close();
  return usage.result ? usage.result.usedSize / 1024 : NaN;
}

export async function startProfile(inspectorPort) {
  const session = await inspectorSession(inspectorPort);
  await session.call("Profiler.enable");
  await session.call("Profiler.setSamplingInterval", { interval: 100 }); // microseconds
  await session.call("Profiler.start");
  return async () => {
    const { result } = await session.call("Profiler.stop");
    session.close();
    return result.profile;
  };
}

/** Where a function lives, in words: our source by file, a dependency by package, or V8's own. */
function place(frame) {
  const url = frame.url || "";
  if (!url) return frame.functionName ? `(${frame.functionName})` : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const src = /(src\/[^?]+|bench\/[^?]+)/.exec(url);
  return src ? src[1] : url.replace(/^.*\//, "");
}

/** Self time by function and by place, as shares of the sampled time. */
export function summarizeProfile(profile, top = 12) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((nodeId, i) => selfUs.set(nodeId, (selfUs.get(nodeId) ?? 0) + (deltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const fns = new Map();
  const places = new Map();
  for (const [nodeId, us] of selfUs) {
    const f = byId.get(nodeId).callFrame;
    const where = place(f);
    const name = `${f.functionName || "(anonymous)"} ${where}${f.url ? `:${f.lineNumber + 1}` : ""}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
    places.set(where, (places.get(where) ?? 0) + us);
  }
  const share = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({ what: k, percent: (100 * us) / total }));
  const idle =
    ((selfUs.get([...byId.values()].find((n) => n.callFrame.functionName === "(idle)")?.id) ?? 0) * 100) / total;
  return { sampledMs: total / 1000, idlePercent: idle, functions: share(fns), places: share(places) };
}
