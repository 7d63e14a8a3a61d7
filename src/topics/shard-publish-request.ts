/**
 * A `publishMany` call to a TopicShard as an HTTP request, for the gateway (ROUTE_AT_EDGE).
 *
 * Why not the RPC method the Session objects call: a Worker invocation can cancel a `fetch` (an
 * AbortSignal) but not an RPC call. When every object is reset under the local runtime, the call
 * chain gateway -> shard -> subscriber session stays pending for ever: the session waits on a timer
 * of an aborted object, and nothing ends a Worker invocation the way a reset ends a Session object
 * that made the call. Cancelling the gateway's request at its deadline (EDGE_ROUTE_TIMEOUT_MS) lets
 * the runtime tear the chain down; the message is then unrouted for the client (no PUBACK, the
 * connection ends, the client resends: test/workers/durability.test.ts).
 *
 * The body: a 4-byte length, a JSON header (the call's order and each message without its bytes),
 * then each message's correlation data and payload. Pure code: the stub's `fetch` is given.
 */
import type { RoutedMessage } from "../protocol/message";
import type { CallOrder } from "../util/ordered-calls";

/** The path of the shard's `fetch` that takes a `publishMany` call. */
export const PUBLISH_MANY_PATH = "/publish-many";

/** One message in the header: its byte fields are the lengths of what follows the header. */
type MessageHeader = Omit<RoutedMessage, "payload"> & { payloadBytes: number; correlationBytes: number };

interface RequestHeader {
  order?: CallOrder;
  messages: MessageHeader[];
}

/** The request body for `publishMany(messages, order)` (the gateway's side). */
export function encodePublishMany(messages: RoutedMessage[], order?: CallOrder): Uint8Array {
  const blobs: Uint8Array[] = [];
  const headers = messages.map(({ payload, properties, ...rest }): MessageHeader => {
    const correlation = properties?.correlationData ?? new Uint8Array(0);
    blobs.push(correlation, payload);
    const props = properties && { ...properties, correlationData: undefined };
    return { ...rest, properties: props, payloadBytes: payload.length, correlationBytes: correlation.length };
  });
  const header = new TextEncoder().encode(JSON.stringify({ order, messages: headers } satisfies RequestHeader));
  const out = new Uint8Array(4 + header.length + blobs.reduce((n, b) => n + b.length, 0));
  new DataView(out.buffer).setUint32(0, header.length);
  out.set(header, 4);
  let at = 4 + header.length;
  for (const blob of blobs) {
    out.set(blob, at);
    at += blob.length;
  }
  return out;
}

/** The call in a request body (the shard's side), or why it is not one (answered 400, nothing routed). */
export function decodePublishMany(
  body: Uint8Array,
): { messages: RoutedMessage[]; order?: CallOrder } | { error: string } {
  if (body.length < 4) return { error: "publish-many body too short" };
  const headerEnd = 4 + new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(0);
  if (headerEnd > body.length) return { error: "publish-many header longer than its body" };
  let header: RequestHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(body.subarray(4, headerEnd))) as RequestHeader;
  } catch {
    return { error: "publish-many header is not JSON" };
  }
  if (!Array.isArray(header?.messages)) return { error: "publish-many header has no messages" };
  let at = headerEnd;
  const take = (n: unknown): Uint8Array | undefined => {
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || at + n > body.length) return undefined;
    at += n;
    return body.slice(at - n, at);
  };
  const messages: RoutedMessage[] = [];
  for (const { payloadBytes, correlationBytes, ...rest } of header.messages) {
    const correlation = take(correlationBytes);
    const payload = take(payloadBytes);
    if (!correlation || !payload) return { error: "publish-many message lengths exceed the body" };
    const message: RoutedMessage = { ...rest, payload };
    if (rest.properties && correlation.length > 0) {
      message.properties = { ...rest.properties, correlationData: correlation };
    }
    messages.push(message);
  }
  if (at !== body.length) return { error: "publish-many body longer than its messages" };
  return { messages, order: header.order };
}

/**
 * `publishMany` over the shard's `fetch`, given up after `timeoutMs`: the request is cancelled and
 * the returned promise rejects, as for an unreachable shard.
 */
export async function publishManyByFetch(
  shard: { fetch(input: string, init: RequestInit): Promise<Response> },
  messages: RoutedMessage[],
  order: CallOrder | undefined,
  timeoutMs: number,
): Promise<number[]> {
  const res = await shard.fetch(`https://shard${PUBLISH_MANY_PATH}`, {
    method: "POST",
    body: encodePublishMany(messages, order),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`shard answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as number[];
}
