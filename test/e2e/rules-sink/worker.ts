/**
 * The consumer of the rules' Queue in test/e2e/rules.test.ts: a second Worker in the same
 * `wrangler dev` (its config is written by the test), which POSTs each batch's bodies to the test's
 * own HTTP server at SINK_URL, so the test sees exactly what the broker's `queue` actions sent.
 */
export default {
  fetch(): Response {
    return new Response("rules sink");
  },
  async queue(batch: MessageBatch<unknown>, env: { SINK_URL: string }): Promise<void> {
    const bodies = batch.messages.map((m) => m.body);
    const res = await fetch(env.SINK_URL, { method: "POST", body: JSON.stringify(bodies) });
    if (res.ok) batch.ackAll();
    else batch.retryAll();
  },
};
