// @ts-check
/**
 * What a broker's processes use, read from outside (ps and Linux /proc): resident memory and CPU
 * time of a whole process group, and waiting until the brokers are idle.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { now, sleep } from "./load.mjs";

/**
 * Resident memory (KB) of every process in a process group.
 * @param {number} pgid
 */
export function groupRssKb(pgid) {
  try {
    const out = execFileSync("ps", ["-o", "rss=", "-g", String(pgid)]).toString();
    return out
      .split("\n")
      .filter(Boolean)
      .reduce((a, b) => a + Number(b), 0);
  } catch {
    return NaN;
  }
}

/**
 * The processes of a process group.
 * @param {number} pgid
 * @returns {string[]}
 */
function groupPids(pgid) {
  return execFileSync("ps", ["-o", "pid=", "-g", String(pgid)])
    .toString()
    .split("\n")
    .filter(Boolean)
    .map((pid) => pid.trim());
}

/**
 * The TCP ports on 127.0.0.1 that processes of a process group listen on (Linux /proc).
 * @param {number} pgid
 * @returns {number[]}
 */
export function groupListeningPorts(pgid) {
  /** @type {Set<string>} */
  const inodes = new Set();
  const pids = groupPids(pgid);
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const link = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (link) inodes.add(link[1]);
      }
    } catch {
      // the process exited, or an fd closed while it was read
    }
  }
  // /proc/net/tcp: "sl local_address rem_address st ... inode", addresses in hex; st 0A is LISTEN
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[3] === "0A" && f[1]?.startsWith("0100007F:") && inodes.has(f[9] ?? ""))
    .map((f) => parseInt(/** @type {string} */ (f[1]).split(":")[1] ?? "", 16));
}

/**
 * CPU time (ms) used so far by every process in a process group (Linux /proc).
 * @param {number} pgid
 */
export function groupCpuMs(pgid) {
  try {
    const pids = groupPids(pgid);
    let ticks = 0;
    for (const pid of pids) {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
        ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
      } catch {
        // the process exited between ps and /proc: it no longer counts
      }
    }
    return ticks * 10; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * How many SQLite databases the processes of a process group hold open (Linux /proc): under workerd,
 * one per Durable Object in memory, closed when the object is evicted.
 * @param {number} pgid
 */
export function groupOpenDatabases(pgid) {
  let open = 0;
  try {
    const pids = groupPids(pgid);
    for (const pid of pids) {
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          try {
            if (readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(".sqlite")) open++;
          } catch {
            // the fd closed while it was read
          }
        }
      } catch {
        // the process exited between ps and /proc
      }
    }
  } catch {
    return NaN;
  }
  return open;
}

/** Databases a run may leave open and the next still start at once (a latency run's few clients). */
const EVICTION_SLACK = 20;

/**
 * Waits until the Durable Objects the broker's last run created have been evicted, at most `capMs`:
 * until it holds no more than EVICTION_SLACK databases above what it held when that run started.
 * Locally every object shares workerd's one thread, and evicting hundreds of them at once (10 - 20 s
 * after a fan-out or a cost run, as workerd's idle timeout comes) stalled the next run: QoS 1 p99
 * 12.8, 24.3, 31.1 ms in the three repetitions right after fan-out while the open databases fell
 * 705 -> 54, 3.6 - 9.8 ms in most later ones (docs/PERFORMANCE.md). Deployed, objects do not share
 * one thread. Returns the time waited; a broker without the count (Aedes) is not waited for.
 * @param {{ openDatabases?: () => number; databasesAtLastRun?: number }} broker
 */
export async function untilLastRunEvicted(broker, capMs = 45000) {
  const start = now();
  if (!broker.openDatabases) return 0;
  const reference = broker.databasesAtLastRun;
  while (reference !== undefined && now() - start < capMs && broker.openDatabases() > reference + EVICTION_SLACK) {
    await sleep(500);
  }
  broker.databasesAtLastRun = broker.openDatabases();
  return now() - start;
}

/**
 * Waits until both brokers are idle (under 5% of a core over 500 ms), so that one run does not pay
 * for the work another left behind (ours ends the sessions of 100 clients after fan-out, for
 * instance): every run starts on a quiet machine. Returns the time waited.
 * @param {{ cpuMs(): number }[]} brokers
 */
export async function untilIdle(brokers, capMs = 30000) {
  const start = now();
  while (now() - start < capMs) {
    const before = brokers.reduce((sum, b) => sum + b.cpuMs(), 0);
    await sleep(500);
    const used = brokers.reduce((sum, b) => sum + b.cpuMs(), 0) - before;
    if (!(used >= 25)) break;
  }
  return now() - start;
}
