/**
 * Why the gateway closed a connection's internal socket, told to the Session object in the close
 * frame (code InternalClose.*, reason text at most 123 bytes), so the session can log how the
 * connection ended. The text is `0x8d keep alive timeout` when the client was sent that v5 reason
 * code, or the reason alone.
 */
import { InternalClose } from "./constants";

/** Longest close reason a WebSocket close frame carries, in bytes. */
const MAX_CLOSE_REASON_BYTES = 123;

/** A reason code as logs and close reasons show it: 0x8d. */
export function hexCode(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")}`;
}

/** The close frame's reason text for a gateway abort (cut to fit a close frame). */
export function closeReasonText(reason: string, reasonCode?: number): string {
  const text = reasonCode === undefined ? reason : `${hexCode(reasonCode)} ${reason}`;
  let cut = text.slice(0, MAX_CLOSE_REASON_BYTES);
  while (new TextEncoder().encode(cut).length > MAX_CLOSE_REASON_BYTES) cut = cut.slice(0, -1);
  return cut;
}

/** How the connection ended, read back from the internal socket's close code and reason. */
export function endCause(closeCode: number, text: string): { reason: string; code?: string } {
  if (closeCode === InternalClose.CLIENT_GONE)
    return { reason: "network: the client's connection closed without DISCONNECT" };
  const coded = /^(0x[0-9a-f]{2}) (.*)$/s.exec(text);
  if (coded) return { reason: coded[2] ?? "", code: coded[1] };
  return { reason: text || `internal socket closed (${closeCode})` };
}
