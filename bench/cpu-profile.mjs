// A CPU profile of the Worker's JavaScript under workerd, taken through the V8 inspector that
// `wrangler dev --inspector-port` exposes (Chrome DevTools protocol: Profiler.start / Profiler.stop).
// The Worker and its Durable Objects run in that one isolate locally, so the profile covers all of it.
import WebSocket from "ws";

/**
 * A Chrome DevTools protocol session with workerd's isolate; `call` gives up after `ms`, the open after
 * `openMs` (after the whole bench wrangler's inspector proxy did not open one within 60 s).
 */
async function inspectorSession(inspectorPort, ms = 60000, openMs = 15000) {
  const ws = new WebSocket(`ws://127.0.0.1:${inspectorPort}/ws`);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`inspector not open within ${openMs} ms`)), openMs);
    ws.once("open", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
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
      const timer = setTimeout(() => resolve({ timedOut: method }), ms);
      waiting.set(n, (/** @type {unknown} */ msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  return { call, close: () => ws.close() };
}

/**
 * Above this JS heap a snapshot is not taken: workerd builds a heap snapshot in memory. (After the
 * whole bench the measurement never ended, with workerd at 3.7 GB; bounded, it was the inspector's
 * open that did not complete, 2026-12-01.)
 */
const SNAPSHOT_HEAP_LIMIT_KB = 256 * 1024;

/**
 * The isolate's JS heap in use, in KB, after a full garbage collection; NaN when it cannot be
 * measured within `ms` or the heap is over SNAPSHOT_HEAP_LIMIT_KB (both logged). workerd does not
 * answer HeapProfiler.collectGarbage; a heap snapshot collects garbage first, so one is taken (its
 * chunks are ignored).
 */
export async function heapUsedKb(inspectorPort, ms = 60000) {
  const session = await inspectorSession(inspectorPort, ms).catch((err) => {
    console.log(`  heap not measured: ${err.message}`);
    return undefined;
  });
  if (!session) return NaN;
  try {
    const uncollected = await session.call("Runtime.getHeapUsage");
    const uncollectedKb = uncollected.result ? uncollected.result.usedSize / 1024 : NaN;
    if (!(uncollectedKb <= SNAPSHOT_HEAP_LIMIT_KB)) {
      console.log(`  heap not measured: ${Math.round(uncollectedKb / 1024)} MB in use before collection, no snapshot`);
      return NaN;
    }
    await session.call("HeapProfiler.enable");
    const snapshot = await session.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    if (snapshot.timedOut) {
      console.log(`  heap not measured: the snapshot took over ${ms} ms`);
      return NaN;
    }
    const usage = await session.call("Runtime.getHeapUsage");
    return usage.result ? usage.result.usedSize / 1024 : NaN;
  } finally {
    session.close();
  }
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
