/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced authentication method [MQTT-4.12].
 * The password never crosses the wire. The stored PBKDF2-SHA-256 hash is SCRAM's SaltedPassword,
 * so the same AUTH_USERS entries serve both plain and SCRAM authentication.
 */
import { constantTimeEqual, fromBase64, hmacSha256 as hmac, toBase64 } from "./password";
import { storedCredential, type UserDirectory } from "./stored-credential";

export const SCRAM_METHOD = "SCRAM-SHA-256";

const decoder = new TextDecoder();

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

function attributes(message: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) map.set(part.slice(0, 1), part.slice(2));
  }
  return map;
}

export interface ScramExchange {
  /** The server-first-message to send in AUTH (0x18). */
  serverFirst: string;
  /** Verifies the client-final-message; on success returns the server-final-message for CONNACK. */
  finish(
    clientFinal: Uint8Array,
  ): Promise<{ ok: true; username: string; serverFinal: string; roles: string[] } | { ok: false }>;
}

/**
 * Starts an exchange from the client-first-message (CONNECT's Authentication Data). An unknown user
 * gets the challenge a real user would (a salt stable per name and the usual iteration count, from
 * stored-credential.ts), the same verification work, and fails only at the end: the exchange does
 * not reveal whether the user exists.
 */
export async function startScram(
  clientFirstBytes: Uint8Array,
  directory: UserDirectory,
): Promise<ScramExchange | undefined> {
  const clientFirst = decoder.decode(clientFirstBytes);
  // gs2 header: no channel binding ("n,,"), no authzid
  if (!clientFirst.startsWith("n,,")) return undefined;
  const bare = clientFirst.slice(3);
  const attrs = attributes(bare);
  const username = attrs.get("n")?.replaceAll("=2C", ",").replaceAll("=3D", "=");
  const clientNonce = attrs.get("r");
  if (!username || !clientNonce) return undefined;
  const { user, stored } = await storedCredential(username, directory);
  const nonce = clientNonce + toBase64(crypto.getRandomValues(new Uint8Array(18)));
  const serverFirst = `r=${nonce},s=${toBase64(stored.salt)},i=${stored.iterations}`;
  return {
    serverFirst,
    async finish(clientFinalBytes) {
      const clientFinal = decoder.decode(clientFinalBytes);
      const final = attributes(clientFinal);
      const proofAt = clientFinal.lastIndexOf(",p=");
      if (final.get("r") !== nonce || final.get("c") !== "biws" || proofAt < 0) return { ok: false };
      const authMessage = `${bare},${serverFirst},${clientFinal.slice(0, proofAt)}`;
      const saltedPassword = stored.hash;
      const clientKey = await hmac(saltedPassword, "Client Key");
      const storedKey = await sha256(clientKey);
      const clientSignature = await hmac(storedKey, authMessage);
      let proof: Uint8Array;
      try {
        proof = fromBase64(final.get("p") ?? "");
      } catch {
        return { ok: false };
      }
      if (proof.length !== clientSignature.length) return { ok: false };
      const recoveredKey = proof.map((b, i) => b ^ clientSignature[i]!); // lengths checked above
      const proven = constantTimeEqual(await sha256(recoveredKey), storedKey);
      // The server signature is computed for everyone, so an unknown user's refusal costs the same.
      const serverSignature = await hmac(await hmac(saltedPassword, "Server Key"), authMessage);
      if (!proven || !user) return { ok: false };
      return { ok: true, username, serverFinal: `v=${toBase64(serverSignature)}`, roles: user.roles };
    },
  };
}
