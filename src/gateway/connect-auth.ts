/**
 * Who a connecting client is, decided at the edge before its Session object wakes: the user's
 * `authenticate` hook, then the configured methods (auth/authenticate.ts); or MQTT 5 enhanced
 * authentication, a SCRAM-SHA-256 exchange of AUTH packets the gateway runs itself (auth/scram.ts).
 * A refusal is a CONNACK code and nothing more.
 */
import type { AuthPacket, ConnectPacket, Packet } from "../protocol/packets";
import type { Env } from "../env";
import type { Identity } from "../auth/acl";
import type { AuthConfig } from "../auth/auth-config";
import { authenticate, type AuthOutcome } from "../auth/authenticate";
import { SCRAM_METHOD, startScram, type ScramExchange } from "../auth/scram";
import { currentHooks, runHook, type AuthenticateInput } from "../hooks";
import { ConnectReturnCode, ReasonCode } from "../protocol/constants";
import type { AuthResponse } from "../protocol/internal-frame";

/** CONNACK codes per authentication refusal (v5 reason code, 3.1.1 return code). */
const REFUSALS = {
  "bad-credentials": { v5: ReasonCode.BAD_USERNAME_OR_PASSWORD, v3: ConnectReturnCode.BAD_USERNAME_OR_PASSWORD },
  "not-authorized": { v5: ReasonCode.NOT_AUTHORIZED, v3: ConnectReturnCode.NOT_AUTHORIZED },
  unavailable: { v5: ReasonCode.SERVER_UNAVAILABLE, v3: ConnectReturnCode.SERVER_UNAVAILABLE },
} as const;

export type Refusal = keyof typeof REFUSALS;

/** The refusal CONNACK's codes, for either protocol level. */
export function refusalCodes(refusal: Refusal) {
  const code = REFUSALS[refusal];
  return { reasonCode: code.v5, returnCode: code.v3, sessionPresent: false } as const;
}

/** The `authenticate` moment, then the configured methods; the outcome names who the client is. */
export async function authenticateConnect(
  connect: ConnectPacket,
  clientId: string,
  remoteAddress: string | undefined,
  auth: AuthConfig,
  env: Env,
): Promise<AuthOutcome> {
  const input = { clientId, username: connect.username, password: connect.password, remoteAddress };
  return (await authenticateHook(input, env)) ?? (await authenticate(input, auth));
}

/** The user's authenticate hook, when installed and when it decides (src/hooks.ts). */
async function authenticateHook(input: AuthenticateInput, env: Env): Promise<AuthOutcome | undefined> {
  const hook = currentHooks().authenticate;
  if (!hook) return undefined;
  const failed = { allow: false, reason: "unavailable" } as const;
  const decided = await runHook("authenticate", failed, () => hook(input, env));
  if (decided === undefined) return undefined;
  // The hook is the authority: the identity it returns, never CONNECT's username on its own.
  if (decided.allow) return { ok: true, identity: decided.identity ?? {} };
  return { ok: false, refusal: decided.reason ?? "bad-credentials" };
}

/** The methods of enhanced authentication the broker offers (SCRAM needs AUTH_USERS). */
export function authMethods(auth: AuthConfig): string[] {
  return auth.users.size > 0 ? [SCRAM_METHOD] : [];
}

/** CONNECT asks for SCRAM (its Authentication Method). */
export function wantsScram(connect: ConnectPacket): boolean {
  return connect.properties?.authenticationMethod === SCRAM_METHOD;
}

export type ScramOutcome = { ok: true; identity: Identity; authResponse: AuthResponse } | { ok: false };

/**
 * One SCRAM-SHA-256 login [MQTT-4.12]: CONNECT -> AUTH 0x18 (challenge) -> AUTH 0x18 (response) ->
 * CONNACK. The exchange starts with CONNECT's Authentication Data (the client-first-message).
 */
export class ScramLogin {
  private readonly exchange: Promise<ScramExchange | undefined>;

  constructor(connect: ConnectPacket, auth: AuthConfig) {
    this.exchange = startScram(connect.properties?.authenticationData ?? new Uint8Array(), auth);
  }

  /** The AUTH challenge; undefined for a malformed client-first-message. */
  challenge(): Promise<AuthPacket | undefined> {
    return this.exchange.then((started) =>
      started
        ? {
            cmd: "auth",
            reasonCode: ReasonCode.CONTINUE_AUTHENTICATION,
            properties: { authenticationMethod: SCRAM_METHOD, authenticationData: Buffer.from(started.serverFirst) },
          }
        : undefined,
    );
  }

  /** [MQTT-4.12.0-2..4] only AUTH with Continue Authentication and the same method may follow the challenge. */
  static isResponse(packet: Packet | undefined): packet is AuthPacket {
    return (
      packet?.cmd === "auth" &&
      packet.reasonCode === ReasonCode.CONTINUE_AUTHENTICATION &&
      packet.properties?.authenticationMethod === SCRAM_METHOD
    );
  }

  /** Checks the client's proof; on success, who it is and the server-final-message for CONNACK. */
  async finish(response: AuthPacket): Promise<ScramOutcome> {
    const started = await this.exchange;
    const data = response.properties?.authenticationData ?? new Uint8Array();
    const result = started ? await started.finish(data) : { ok: false as const };
    if (!result.ok) return { ok: false };
    return {
      ok: true,
      identity: { username: result.username, roles: result.roles },
      authResponse: { method: SCRAM_METHOD, data: btoa(result.serverFinal) },
    };
  }
}
