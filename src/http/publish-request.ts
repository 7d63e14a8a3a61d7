/**
 * HTTP publish: the JSON body of `POST /api/v1/publish` (one message) or `/api/v1/publish/batch`
 * (an array, or `{ "messages": [...] }`) -> validated messages, or an error naming the field.
 * The same rules as an MQTT PUBLISH apply: topic name rules [MQTT-4.7], UTF-8 payload when the
 * Payload Format Indicator says so, a Response Topic that is a topic name [MQTT-3.3.2-13].
 */
import type { BrokerConfig } from "../config";
import type { MessageProperties, QoS, UserProperty } from "../protocol/message";
import { topicNameError } from "../protocol/topic";
import { userPropertyList } from "../protocol/user-properties";
import { isUtf8 } from "../protocol/validate";

/** A message as the API accepted it, before it gets an id and a time. */
export interface PublishDraft {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
}

export type PublishParse = { ok: true; messages: PublishDraft[] } | { ok: false; error: string; status: 400 | 413 };

/** Most messages in one batch request. */
export const MAX_BATCH_MESSAGES = 100;

const encoder = new TextEncoder();
const FIELDS = new Set(["topic", "payload", "encoding", "qos", "retain", "properties"]);
const PROPERTY_FIELDS = new Set([
  "payloadFormatIndicator",
  "messageExpiryInterval",
  "contentType",
  "responseTopic",
  "correlationData",
  "userProperties",
]);

class Invalid extends Error {
  constructor(
    message: string,
    readonly status: 400 | 413 = 400,
  ) {
    super(message);
  }
}

/** Parses one message (`single`) or a batch from a JSON value. */
export function parsePublishBody(body: unknown, config: BrokerConfig, batch: boolean): PublishParse {
  try {
    if (!batch) return { ok: true, messages: [parseMessage(body, config, "")] };
    const list = Array.isArray(body)
      ? body
      : isObject(body) && Array.isArray(body.messages)
        ? body.messages
        : undefined;
    if (!list) throw new Invalid('a batch is a JSON array of messages, or {"messages": [...]}');
    if (list.length === 0) throw new Invalid("the batch is empty");
    if (list.length > MAX_BATCH_MESSAGES)
      throw new Invalid(`a batch holds at most ${MAX_BATCH_MESSAGES} messages, got ${list.length}`, 413);
    return { ok: true, messages: list.map((m, i) => parseMessage(m, config, `messages[${i}].`)) };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, error: err.message, status: err.status };
    throw err;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseMessage(value: unknown, config: BrokerConfig, at: string): PublishDraft {
  if (!isObject(value)) throw new Invalid(`${at || "body"} must be a JSON object with at least "topic"`);
  for (const key of Object.keys(value)) if (!FIELDS.has(key)) throw new Invalid(`${at}${key}: unknown field`);
  const topic = value.topic;
  if (typeof topic !== "string") throw new Invalid(`${at}topic: required, a string`);
  const topicError = topicNameError(topic, config);
  if (topicError) throw new Invalid(`${at}topic: ${topicError}`);
  const qos = value.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new Invalid(`${at}qos: must be 0, 1 or 2`);
  const retain = value.retain ?? false;
  if (typeof retain !== "boolean") throw new Invalid(`${at}retain: must be true or false`);
  const payload = decodePayload(value.payload, value.encoding, at);
  const properties = parseProperties(value.properties, config, at);
  if (properties?.payloadFormatIndicator && !isUtf8(payload)) {
    throw new Invalid(`${at}payload: not UTF-8, but properties.payloadFormatIndicator says it is`);
  }
  // The same bound as an MQTT PUBLISH: the message must fit in the broker's Maximum Packet Size.
  const size = payload.length + encoder.encode(topic).length + JSON.stringify(value.properties ?? {}).length + 16;
  if (size > config.maxPacketSize) {
    throw new Invalid(
      `${at}payload: the message (about ${size} bytes) exceeds the maximum packet size of ${config.maxPacketSize}`,
      413,
    );
  }
  return { topic, payload, qos, retain, properties };
}

function decodePayload(payload: unknown, encoding: unknown, at: string): Uint8Array {
  if (payload === undefined || payload === null) return new Uint8Array();
  if (typeof payload !== "string")
    throw new Invalid(`${at}payload: must be a string (text, or base64 with "encoding": "base64")`);
  if (encoding === undefined || encoding === "utf8" || encoding === "utf-8") return encoder.encode(payload);
  if (encoding === "base64") return base64Bytes(payload, `${at}payload`);
  throw new Invalid(`${at}encoding: must be "utf8" or "base64"`);
}

function base64Bytes(text: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw new Invalid(`${field}: not valid base64`);
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function parseProperties(value: unknown, config: BrokerConfig, at: string): MessageProperties | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new Invalid(`${at}properties: must be an object`);
  const out: MessageProperties = {};
  for (const key of Object.keys(value))
    if (!PROPERTY_FIELDS.has(key)) throw new Invalid(`${at}properties.${key}: unknown property`);
  const p = value;
  if (p.payloadFormatIndicator !== undefined) {
    if (typeof p.payloadFormatIndicator !== "boolean")
      throw new Invalid(`${at}properties.payloadFormatIndicator: must be true or false`);
    out.payloadFormatIndicator = p.payloadFormatIndicator;
  }
  if (p.messageExpiryInterval !== undefined) {
    const v = p.messageExpiryInterval;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new Invalid(`${at}properties.messageExpiryInterval: seconds, an integer from 0 to 4294967295`);
    }
    out.messageExpiryInterval = v;
  }
  if (p.contentType !== undefined) {
    if (typeof p.contentType !== "string") throw new Invalid(`${at}properties.contentType: must be a string`);
    out.contentType = p.contentType;
  }
  if (p.responseTopic !== undefined) {
    const error = typeof p.responseTopic === "string" ? topicNameError(p.responseTopic, config) : "must be a string";
    if (error) throw new Invalid(`${at}properties.responseTopic: ${error}`);
    out.responseTopic = p.responseTopic as string;
  }
  if (p.correlationData !== undefined) {
    if (typeof p.correlationData !== "string") throw new Invalid(`${at}properties.correlationData: base64 string`);
    out.correlationData = base64Bytes(p.correlationData, `${at}properties.correlationData`);
  }
  if (p.userProperties !== undefined)
    out.userProperties = parseUserProperties(p.userProperties, `${at}properties.userProperties`);
  return Object.keys(out).length ? out : undefined;
}

/**
 * User Properties: `[["name", "value"], ...]`, sent in that order with names free to repeat
 * [MQTT-3.3.2-17, 3.3.2-18], or the object form `{"name": "value" | ["value", ...]}` (a JSON
 * object's own order, the values of a name together).
 */
function parseUserProperties(value: unknown, field: string): UserProperty[] {
  const list = Array.isArray(value) || isObject(value) ? userPropertyList(value) : undefined;
  if (!list)
    throw new Invalid(
      `${field}: a list of ["name", "value"] string pairs, or an object of string (or string array) values`,
    );
  // each name and value is an MQTT UTF-8 string: at most 65535 bytes [MQTT-1.5.4]
  if (list.some((pair) => pair.some((s) => encoder.encode(s).length > 65535)))
    throw new Invalid(`${field}: a name or value longer than 65535 bytes`);
  return list;
}
