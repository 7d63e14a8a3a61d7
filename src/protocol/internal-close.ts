/**
 * Why the gateway closed a connection's internal socket, told to the Session object in the close
 * frame (code InternalClose.*, reason text at most 123 bytes), so the session can log how the
 * connection ended. The text is `0x8d keep alive timeout` when the client was sent that v5 reason
 * code, or the reason alone, and then ` [frames N]`: how many frames the gateway sent on the socket.
 *
 * Why the count: under workerd the close event of a hibernatable WebSocket can reach the Session
 * object before the last frames sent ahead of it (measured: a PUBACK a client sent just before its
 * WebSocket closed was handled after the end of its connection, so the acknowledged message was
 * sent again on resumption; test/workers/ack-then-disconnect.test.ts). With the count, the session
 * ends the connection only once every frame sent before the close has been handled.
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
  return cutToBytes(text, MAX_CLOSE_REASON_BYTES);
}

/** Most characters of a close reason the sockets' `close` calls pass on (they cut the rest). */
export const SENT_CLOSE_REASON_CHARS = 120;

/**
 * The close reason with the count of frames sent on the socket, in at most SENT_CLOSE_REASON_CHARS
 * bytes, so that no cut loses the count; the reason is cut to make room for it.
 */
export function withFramesSent(reason: string, framesSent: number): string {
  const suffix = ` [frames ${framesSent}]`;
  return cutToBytes(reason, SENT_CLOSE_REASON_CHARS - suffix.length) + suffix;
}

/** How the connection ended, read back from the internal socket's close code and reason. */
export function endCause(closeCode: number, text: string): { reason: string; code?: string; framesSent?: number } {
  const counted = / \[frames (\d+)\]$/.exec(text);
  const framesSent = counted ? Number(counted[1]) : undefined;
  if (counted) text = text.slice(0, counted.index);
  const withCount = framesSent === undefined ? {} : { framesSent };
  if (closeCode === InternalClose.CLIENT_GONE)
    return { reason: "network: the client's connection closed without DISCONNECT", ...withCount };
  const coded = /^(0x[0-9a-f]{2}) (.*)$/s.exec(text);
  if (coded) return { reason: coded[2] ?? "", code: coded[1], ...withCount };
  return { reason: text || `internal socket closed (${closeCode})`, ...withCount };
}

/** The longest start of `text` of at most `bytes` bytes in UTF-8. */
function cutToBytes(text: string, bytes: number): string {
  let cut = text.slice(0, bytes);
  while (new TextEncoder().encode(cut).length > bytes) cut = cut.slice(0, -1);
  return cut;
}
