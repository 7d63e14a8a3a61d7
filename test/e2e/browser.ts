/** Debian's headless Chromium, driven by playwright-core, for the dashboard tests. */
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { WebSocketServer } from "ws";
import { E2E_ADMIN_TOKEN } from "./global-setup";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Debian's chromium: CI installs it (.ci/run); elsewhere the browser suites are skipped without it. */
export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env.CI) throw new Error("CI must have Debian's chromium installed (see .ci/run)");

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Launches Chromium (when installed) before this file's tests and closes it after; call the result to get it. */
export function browserPerFile(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (hasChromium) browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });
  return () => browser!;
}

/** A browser context that answers the dashboard's Basic challenge with the admin token, as a person would. */
export function adminContext(
  browser: Browser,
  options: Parameters<Browser["newContext"]>[0] = {},
): Promise<BrowserContext> {
  return browser.newContext({ httpCredentials: { username: "admin", password: E2E_ADMIN_TOKEN }, ...options });
}

/**
 * An HTTP + WebSocket server on another port of 127.0.0.1: another origin (same site), standing for
 * an attacker's host. It serves `pages` by path and records every request and WebSocket it gets.
 */
export async function startOtherOrigin(pages: Record<string, string> = {}) {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    const page = pages[req.url ?? ""];
    res.writeHead(page === undefined ? 404 : 200, { "content-type": "text/html; charset=utf-8" });
    res.end(page ?? "");
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws, req) => {
    hits.push(`WS ${req.url}`);
    ws.on("message", (data) => hits.push(`WS message ${String(data).slice(0, 200)}`));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    wsOrigin: `ws://127.0.0.1:${port}`,
    hits,
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a page did that it should not have: dialogs, requests to other origins, policy violations. */
export function watchPage(page: Page, ownOrigin: string) {
  const seen = { dialogs: [] as string[], elsewhere: [] as string[] };
  const own = new URL(ownOrigin);
  const isOwn = (url: string) => {
    const u = new URL(url);
    return u.host === own.host || u.protocol === "data:" || u.protocol === "about:";
  };
  page.on("dialog", (d) => {
    seen.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("request", (r) => {
    if (!isOwn(r.url())) seen.elsewhere.push(r.url());
  });
  page.on("websocket", (ws) => {
    if (!isOwn(ws.url())) seen.elsewhere.push(ws.url());
  });
  return seen;
}

/** Clicks the dashboard's disconnect button of `clientId` (any characters: found by its data, not a selector). */
export async function clickDisconnect(page: Page, clientId: string, ms = 10000): Promise<void> {
  const buttons = page.locator("#clients button[data-kick]");
  const deadline = Date.now() + ms;
  for (;;) {
    const index = await buttons.evaluateAll(
      (bs, id) => bs.findIndex((b) => b.getAttribute("data-kick") === id),
      clientId,
    );
    // the table is rebuilt in the same order on every refresh, so the index stays valid
    if (index >= 0) return buttons.nth(index).click();
    if (Date.now() > deadline) throw new Error(`no disconnect button for client ${JSON.stringify(clientId)}`);
    await page.waitForTimeout(200);
  }
}

/**
 * Waits until the in-page MQTT client's log has a line whose text (after the time and two spaces) starts with
 * `prefix` ("connected (MQTT", "subscribed"), and fails with the whole log otherwise: a substring
 * would let "disconnected" pass for "connected".
 */
export async function inPageLogged(page: Page, prefix: string, ms = 15000): Promise<void> {
  const lines = () => page.$$eval("#log div", (ds) => ds.map((d) => d.textContent ?? ""));
  const deadline = Date.now() + ms;
  for (;;) {
    const log = await lines();
    if (log.some((line) => line.slice(line.indexOf("  ") + 2).startsWith(prefix))) return;
    if (Date.now() > deadline)
      throw new Error(`the in-page client did not log "${prefix}" in ${ms} ms; its log: ${JSON.stringify(log)}`);
    await page.waitForTimeout(100);
  }
}
