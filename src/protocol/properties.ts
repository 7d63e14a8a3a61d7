/** Conversions between mqtt-packet PUBLISH properties and our MessageProperties, and their JSON form. */
import type { MessageProperties } from "./message";
import type { PublishProperties, WillProperties } from "./packets";
import { userPropertyList } from "./user-properties";

/** The properties of a PUBLISH or a will, as parsePacket gives them. */
type PacketProperties = PublishProperties | WillProperties | undefined;

/** Picks the properties the broker forwards unchanged [MQTT-3.3.2-15..20]. */
export function messagePropertiesFrom(props: PacketProperties): MessageProperties | undefined {
  if (!props) return undefined;
  const out: MessageProperties = {};
  if (props.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = Boolean(props.payloadFormatIndicator);
  if (typeof props.messageExpiryInterval === "number") out.messageExpiryInterval = props.messageExpiryInterval;
  if (typeof props.contentType === "string") out.contentType = props.contentType;
  if (typeof props.responseTopic === "string") out.responseTopic = props.responseTopic;
  if (props.correlationData instanceof Uint8Array) out.correlationData = new Uint8Array(props.correlationData);
  // parsePacket gives them as an ordered list; a fresh copy of plain arrays is what RPC can carry.
  const users = userPropertyList(props.userProperties);
  if (users?.length) out.userProperties = users;
  return Object.keys(out).length ? out : undefined;
}

/** JSON form for SQLite; correlation data as base64. */
export function propertiesToJson(props: MessageProperties | undefined): string | null {
  if (!props) return null;
  const { correlationData, ...rest } = props;
  return JSON.stringify(correlationData ? { ...rest, correlationData: toBase64(correlationData) } : rest);
}

export function propertiesFromJson(json: string | null): MessageProperties | undefined {
  if (!json) return undefined;
  const { correlationData, ...rest } = JSON.parse(json) as Omit<MessageProperties, "correlationData"> & {
    correlationData?: string;
  };
  const out: MessageProperties = rest;
  if (typeof correlationData === "string") out.correlationData = fromBase64(correlationData);
  return out;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Remaining lifetime of a message in whole seconds, or undefined when it has no expiry;
 * 0 or less means it has expired and must not be sent [MQTT-3.3.2-5].
 */
export function remainingExpiry(
  props: MessageProperties | undefined,
  receivedAt: number,
  now: number,
): number | undefined {
  if (props?.messageExpiryInterval === undefined) return undefined;
  return props.messageExpiryInterval - Math.floor((now - receivedAt) / 1000);
}
