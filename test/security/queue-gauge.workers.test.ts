/**
 * Security review #11: the deep-queue gauge (the registry's `queues` table, `mqtt_deep_queues`) kept
 * a session's level after the session and its queue were gone. Driven through the real Worker and
 * Durable Objects; the registry's table is read directly.
 */
import { env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { configFor } from "../../src/config";
import { registryStub, sessionStub } from "../../src/env";
import { registryShardFor } from "../../src/registry/client-registry";
import { rawClient } from "../support/workerd";
import { uid } from "../support/ids";
import { until } from "../support/until";

/** The level the registry holds for the client, undefined when it holds none. */
async function gaugeLevel(clientId: string): Promise<number | undefined> {
  const stub = registryStub(env, registryShardFor(clientId, configFor(env).registryShardCount));
  return runInDurableObject(
    stub,
    async (_instance, state) =>
      state.storage.sql.exec<{ level: number }>("SELECT level FROM queues WHERE client_id = ?", clientId).toArray()[0]
        ?.level,
  );
}

/** Waits until the registry holds `level` for the client (reports travel off the message path). */
async function gaugeBecomes(clientId: string, level: number | undefined, ms = 4000): Promise<void> {
  await until(async () => (await gaugeLevel(clientId)) === level, `gauge for ${clientId} to be ${level}`, ms);
}

/** An offline session with 20 QoS 1 messages queued: the registry shows level 16. */
async function deepQueue(expirySeconds = 300): Promise<{ clientId: string; topic: string }> {
  const clientId = uid("gauge");
  const topic = `${clientId}/t`;
  const sub = await rawClient(5);
  await sub.connect({ clientId, clean: true, properties: { sessionExpiryInterval: expirySeconds } });
  await sub.subscribe(topic, 1);
  sub.send({ cmd: "disconnect" });
  await sub.waitClosed();
  await until(
    async () => !(await sessionStub(env, clientId).describe())?.connected,
    "the session to see the disconnect",
  );
  const pub = await rawClient(5);
  await pub.connect({ clientId: uid("gauge-pub") });
  for (let i = 1; i <= 20; i++)
    pub.send({ cmd: "publish", topic, payload: Buffer.from(String(i)), qos: 1, messageId: i });
  await pub.until(() => pub.all("puback").length === 20);
  pub.close();
  await gaugeBecomes(clientId, 16);
  return { clientId, topic };
}

describe("the deep-queue gauge follows the session", () => {
  it("is cleared when a clean start discards the session", async () => {
    const { clientId } = await deepQueue();
    const again = await rawClient(5);
    expect((await again.connect({ clientId, clean: true })).sessionPresent).toBe(false);
    await gaugeBecomes(clientId, undefined);
    again.close();
  });

  it("is cleared when the session expires", async () => {
    const { clientId } = await deepQueue(2);
    const session = sessionStub(env, clientId);
    // The premise: the 2 s session expiry passes (describe() answers nothing for an expired session);
    // then the expiry alarm, run now if it has not run by itself, ends the session with its queue.
    await until(async () => (await session.describe()) === undefined, "the session expiry", 10000, 100);
    await runDurableObjectAlarm(session);
    await gaugeBecomes(clientId, undefined);
  });

  it("class: is cleared when an administrator deletes the session", async () => {
    const { clientId } = await deepQueue();
    const res = await SELF.fetch(`http://broker.test/api/v1/sessions/${encodeURIComponent(clientId)}`, {
      method: "DELETE",
      headers: { authorization: "Bearer workers-test-admin" },
    });
    expect(res.status).toBe(200);
    await gaugeBecomes(clientId, undefined);
  });

  it("class: is cleared when a resumed session's client drains the queue", async () => {
    const { clientId } = await deepQueue();
    const again = await rawClient(5);
    again.autoAck = true;
    expect(
      (await again.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 300 } })).sessionPresent,
    ).toBe(true);
    await again.until(() => again.all("publish").length === 20);
    await gaugeBecomes(clientId, undefined);
    again.close();
  });
});
