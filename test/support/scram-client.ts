/** The client side of SCRAM-SHA-256, for tests (Node crypto, independent of the broker's code). */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { at } from "./elements";

export class ScramClient {
  readonly nonce = randomBytes(12).toString("base64");
  readonly clientFirstBare: string;
  private serverSignature?: Buffer;

  constructor(
    username: string,
    private readonly password: string,
  ) {
    this.clientFirstBare = `n=${username},r=${this.nonce}`;
  }

  clientFirst(): Buffer {
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  clientFinal(serverFirstBytes: Buffer, password = this.password): Buffer {
    const serverFirst = serverFirstBytes.toString();
    const attrs = Object.fromEntries(serverFirst.split(",").map((p) => [p[0], p.slice(2)]));
    const salted = pbkdf2Sync(password, Buffer.from(attrs.s, "base64"), Number(attrs.i), 32, "sha256");
    const withoutProof = `c=biws,r=${attrs.r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const signature = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ at(signature, i)));
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    this.serverSignature = createHmac("sha256", serverKey).update(authMessage).digest();
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`);
  }

  /** True when the server's final message proves it knows the password too. */
  verifyServer(serverFinal: Buffer): boolean {
    return serverFinal.toString() === `v=${this.serverSignature!.toString("base64")}`;
  }
}
