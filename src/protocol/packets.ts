/**
 * The MQTT packets as the broker reads and builds them: a union narrowed by `cmd`, built on
 * mqtt-packet's own interfaces and adjusted where we differ from them:
 * - the User Properties of a PUBLISH and of a will are an ordered list of [name, value] pairs, as
 *   codec.ts reads them from the bytes (user-properties.ts), not mqtt-packet's object;
 * - payloads are Buffers (mqtt-packet also takes strings; we never build or receive one);
 * - UNSUBACK's reason codes are absent in 3.1.1, which has none.
 * parsePacket (codec.ts) is where mqtt-packet's objects become these.
 */
import type * as mqtt from "mqtt-packet";
import type { UserProperty } from "./message";

type Properties<P extends { properties?: object }> = NonNullable<P["properties"]>;
/** Properties with User Properties as the ordered list of pairs. */
type WithUserPropertyList<P> = Omit<P, "userProperties"> & { userProperties?: UserProperty[] };

export type PublishProperties = WithUserPropertyList<Properties<mqtt.IPublishPacket>>;
export type PublishPacket = Omit<mqtt.IPublishPacket, "payload" | "properties"> & {
  payload: Buffer;
  properties?: PublishProperties;
};

type MqttWill = NonNullable<mqtt.IConnectPacket["will"]>;
export type WillProperties = WithUserPropertyList<NonNullable<MqttWill["properties"]>>;
export type Will = Omit<MqttWill, "payload" | "properties"> & { payload: Buffer; properties?: WillProperties };
export type ConnectPacket = Omit<mqtt.IConnectPacket, "will"> & { will?: Will };

export type ConnackPacket = mqtt.IConnackPacket;
export type ConnackProperties = Properties<mqtt.IConnackPacket>;
export type SubscribePacket = mqtt.ISubscribePacket;
export type SubackPacket = mqtt.ISubackPacket;
export type UnsubscribePacket = mqtt.IUnsubscribePacket;
/** `granted`: the v5 reason codes, one per filter; absent in 3.1.1. */
export type UnsubackPacket = Omit<mqtt.IUnsubackPacket, "granted"> & { granted?: number[] };
export type PubackPacket = mqtt.IPubackPacket;
export type PubrecPacket = mqtt.IPubrecPacket;
export type PubrelPacket = mqtt.IPubrelPacket;
export type PubcompPacket = mqtt.IPubcompPacket;
export type PingreqPacket = mqtt.IPingreqPacket;
export type PingrespPacket = mqtt.IPingrespPacket;
export type DisconnectPacket = mqtt.IDisconnectPacket;
export type AuthPacket = mqtt.IAuthPacket;

/** The acknowledgements of the QoS 1 and QoS 2 flows. */
export type AckPacket = PubackPacket | PubrecPacket | PubrelPacket | PubcompPacket;

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubackPacket
  | PubrecPacket
  | PubrelPacket
  | PubcompPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;

/** The packets that may carry a v5 Reason String (the ones the broker sends with one). */
export type PacketWithReason =
  ConnackPacket | AckPacket | SubackPacket | UnsubackPacket | DisconnectPacket | AuthPacket;
