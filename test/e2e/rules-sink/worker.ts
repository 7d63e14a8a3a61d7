/**
 * The consumer of the rules' Queues in test/e2e/rules.test.ts: a second Worker in the same
 * `wrangler dev` (its config is written by the test), which POSTs each batch's bodies to the test's
 * own HTTP server at SINK_URL?queue=<its queue>, so the test sees exactly what the broker's `queue`
 * actions sent, and what reached the webhooks' dead-letter queue.
 */
export default {
  fetch(): Response {
    return new Response("rules sink");
  },
  async queue(batch: MessageBatch<unknown>, env: { SINK_URL: string }): Promise<void> {
    const bodies = batch.messages.map((m) => m.body);
    const res = await fetch(`${env.SINK_URL}?queue=${encodeURIComponent(batch.queue)}`, {
      method: "POST",
      body: JSON.stringify(bodies),
    });
    if (res.ok) batch.ackAll();
    else batch.retryAll();
  },
};
