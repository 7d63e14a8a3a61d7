/**
 * Security issue #11, finding 3: a client id used as a URL path segment does not always reach the
 * admin API. URL normalisation removes "." and ".." segments, and per the URL standard "%2e" and
 * "%2E" spellings too, so no path-segment form could name the clients "." or ".."; an administrator
 * could neither inspect nor disconnect nor delete them. The `?clientId=` form reaches every client id,
 * and the dashboard uses it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { adminContext, browserPerFile, clickDisconnect, hasChromium } from "../e2e/browser";
import { E2E_ADMIN_TOKEN } from "../e2e/global-setup";
import { brokerHttp, closeAll, connect, connectRecording } from "../support/clients";

const browser = browserPerFile();
afterEach(closeAll);

async function admin(
  method: string,
  path: string,
  headers: Record<string, string> = { authorization: `Bearer ${E2E_ADMIN_TOKEN}` },
) {
  const res = await fetch(`${brokerHttp()}${path}`, { method, headers });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const q = (clientId: string) => `clientId=${encodeURIComponent(clientId)}`;

/**
 * "." and ".." (the finding) and ids a path segment mangles in other ways: a slash, an encoded dot,
 * a query or fragment character, a space, and a path that normalises to another id.
 */
const IDS = [".", "..", "%2e%2E", "a/../b", "./", "?x=1&y#z", " ", "clients"];

describe("admin API: ?clientId= reaches every client id (issue #11 finding 3)", () => {
  it.each(IDS)("describes, disconnects (0x98) and deletes the session of client %j", async (clientId) => {
    const client = await connect(5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    const described = await admin("GET", `/api/v1/client?${q(clientId)}`);
    expect(described).toMatchObject({ status: 200, body: { clientId, connected: true, protocolVersion: 5 } });

    const reason = new Promise<number>((resolve) => client.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
    expect(await admin("POST", `/api/v1/client/disconnect?${q(clientId)}`)).toEqual({
      status: 200,
      body: { clientId, disconnected: true },
    });
    expect(await reason).toBe(0x98);
    expect((await admin("GET", `/api/v1/client?${q(clientId)}`)).body.connected).toBe(false);

    expect(await admin("DELETE", `/api/v1/session?${q(clientId)}`)).toEqual({
      status: 200,
      body: { clientId, deleted: true },
    });
    expect((await admin("GET", `/api/v1/client?${q(clientId)}`)).status).toBe(404);
    const { connack } = await connectRecording(5, {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
    });
    expect(connack.sessionPresent).toBe(false);
    expect((await admin("DELETE", `/api/v1/session?${q(clientId)}`)).status).toBe(200);
  });

  it("the query form needs the admin token and a client id", async () => {
    for (const [method, path] of [
      ["GET", "/api/v1/client"],
      ["POST", "/api/v1/client/disconnect"],
      ["DELETE", "/api/v1/session"],
    ] as const) {
      // (the header passes the cross-site check that state-changing calls meet before the token check)
      expect((await admin(method, `${path}?${q(".")}`, { "x-requested-by": "test" })).status, `${method} ${path}`).toBe(
        401,
      );
      const missing = await admin(method, path);
      expect(missing.status).toBe(400);
      expect(missing.body.error).toMatch(/clientId: required/);
      expect((await admin(method, `${path}?clientId=`)).status).toBe(400);
    }
  });

  it.skipIf(!hasChromium)('the dashboard\'s disconnect button reaches the clients "." and ".."', async () => {
    const context = await adminContext(browser());
    const page = await context.newPage();
    await page.goto(`${brokerHttp()}/dashboard`);
    for (const clientId of [".", ".."]) {
      const client = await connect(5, { clientId });
      const reason = new Promise<number>((resolve) => client.on("disconnect", (p) => resolve(p.reasonCode ?? -1)));
      await clickDisconnect(page, clientId);
      expect(await reason).toBe(0x98);
    }
    await context.close();
  });
});
