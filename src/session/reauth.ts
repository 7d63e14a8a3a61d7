/**
 * Re-authentication on a live v5 connection [MQTT-4.12.1]: AUTH 0x19 starts a SCRAM exchange with
 * the connection's method, AUTH 0x18 finishes it; the same identity must prove itself again.
 */
import { startScram, type ScramExchange } from "../auth/scram";
import type { UserDirectory } from "../auth/stored-credential";
import { ReasonCode } from "../protocol/constants";
import type { AuthPacket } from "../protocol/packets";
import type { Refusal, SessionContext } from "./session-context";
import type { ConnectionInfo } from "./session-io";

export class Reauthentication {
  /** A re-authentication in progress on the live connection (in memory: it spans two packets). */
  private exchange?: ScramExchange;

  constructor(
    private readonly session: SessionContext,
    /** Users for SCRAM re-authentication. */
    private readonly users: UserDirectory,
  ) {}

  async handleAuth(info: ConnectionInfo, packet: AuthPacket): Promise<Refusal | undefined> {
    const { session } = this;
    const method = packet.properties?.authenticationMethod;
    const data: Uint8Array = packet.properties?.authenticationData ?? new Uint8Array();
    // [MQTT-4.12.0-6..7] AUTH only on a connection that authenticated with a method, and with that method
    if (session.version !== 5 || !info.authResponse || method !== info.authResponse.method) {
      return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "AUTH without the connection's authentication method" };
    }
    if (packet.reasonCode === ReasonCode.REAUTHENTICATE) {
      this.exchange = await startScram(data, this.users);
      if (!this.exchange) return { reasonCode: ReasonCode.NOT_AUTHORIZED, reason: "malformed SCRAM message" };
      const authenticationData = Buffer.from(this.exchange.serverFirst);
      const properties = { authenticationMethod: method, authenticationData };
      const challenge: AuthPacket = { cmd: "auth", reasonCode: ReasonCode.CONTINUE_AUTHENTICATION, properties };
      session.send(info.connId, [challenge]);
      return undefined;
    }
    const exchange = this.exchange;
    this.exchange = undefined;
    if (packet.reasonCode !== ReasonCode.CONTINUE_AUTHENTICATION || !exchange) {
      return { reasonCode: ReasonCode.PROTOCOL_ERROR, reason: "unexpected AUTH" };
    }
    const result = await exchange.finish(data);
    // The same identity must prove itself again; anything else ends the connection [MQTT-4.12.1-2]
    if (!result.ok || result.username !== session.meta.owner) {
      return { reasonCode: ReasonCode.NOT_AUTHORIZED, reason: "re-authentication failed" };
    }
    const properties = { authenticationMethod: method, authenticationData: Buffer.from(result.serverFinal) };
    const done: AuthPacket = { cmd: "auth", reasonCode: ReasonCode.SUCCESS, properties };
    session.send(info.connId, [done]);
    return undefined;
  }
}
