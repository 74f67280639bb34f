/**
 * Herd membership proofs: HMAC-SHA256 with the shared herd secret. The secret itself never
 * crosses the wire; what the MACs cover (fresh nonces, so no replay) is in `handshake.ts`.
 *
 * @module
 */

import { randomHex, toHex } from "./text.ts";

const encoder = new TextEncoder();

function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Signs and checks handshake texts with the herd secret.
 *
 * @example
 * ```ts
 * const auth = new HerdAuth("correct horse battery staple");
 * const mac = await auth.sign("some text");
 * await auth.verify("some text", mac); // true
 * ```
 */
export class HerdAuth {
  #key: Promise<CryptoKey>;

  constructor(secret: string) {
    this.#key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
  }

  /** Hex HMAC of `text`. */
  async sign(text: string): Promise<string> {
    return toHex(await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(text)));
  }

  /** Checks a hex HMAC in constant time. */
  async verify(text: string, mac: string): Promise<boolean> {
    const bytes = fromHex(mac);
    if (bytes === undefined) return false;
    return await crypto.subtle.verify("HMAC", await this.#key, bytes, encoder.encode(text));
  }
}

/**
 * A random herd secret for single-process mode.
 *
 * @example
 * ```ts
 * generateSecret().length; // 64
 * ```
 */
export function generateSecret(): string {
  return randomHex(32);
}
