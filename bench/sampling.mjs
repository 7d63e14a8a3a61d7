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
 * The TCP ports on 127.0.0.1 that processes of a process group listen on (Linux /proc).
 * @param {number} pgid
 * @returns {number[]}
 */
export function groupListeningPorts(pgid) {
  /** @type {Set<string>} */
  const inodes = new Set();
  const pids = execFileSync("ps", ["-o", "pid=", "-g", String(pgid)])
    .toString()
    .split("\n")
    .filter(Boolean);
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`/proc/${pid.trim()}/fd`)) {
        const link = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid.trim()}/fd/${fd}`));
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
    const pids = execFileSync("ps", ["-o", "pid=", "-g", String(pgid)])
      .toString()
      .split("\n")
      .filter(Boolean);
    let ticks = 0;
    for (const pid of pids) {
      try {
        const fields = readFileSync(`/proc/${pid.trim()}/stat`, "utf8").split(") ")[1].split(" ");
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
