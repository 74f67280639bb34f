/**
 * Herd membership proofs: HMAC-SHA256 over a handshake line with the shared herd secret.
 * The secret itself never crosses the wire; a timestamp window and a nonce cache stop replays.
 *
 * @module
 */

const encoder = new TextEncoder();

/** How far a handshake's clock may be from ours. */
export const HANDSHAKE_WINDOW_MS = 60_000;

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

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
 * const mac = await auth.sign("HELLO|Hill|Jaquez|1700000000000|abc");
 * await auth.verify("HELLO|Hill|Jaquez|1700000000000|abc", mac); // true
 * ```
 */
export class HerdAuth {
  #key: Promise<CryptoKey>;
  #seen = new Map<string, number>();

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

  /**
   * Checks a signed handshake: the MAC over `text` first (so an unauthenticated sender cannot
   * fill the nonce cache), then the time window and the nonce.
   */
  async checkHandshake(
    text: string,
    unixMs: string,
    nonce: string,
    mac: string,
  ): Promise<"ok" | "bad secret" | "stale or replayed"> {
    if (!(await this.verify(text, mac))) return "bad secret";
    if (!/^\d+$/.test(unixMs) || !this.fresh(Number(unixMs), nonce)) return "stale or replayed";
    return "ok";
  }

  /**
   * True when a handshake's time is within the window and its nonce is new; remembers the nonce
   * for the window so the same handshake cannot be replayed.
   */
  fresh(unixMs: number, nonce: string, now = Date.now()): boolean {
    if (!Number.isFinite(unixMs) || Math.abs(now - unixMs) > HANDSHAKE_WINDOW_MS) return false;
    if (this.#seen.has(nonce)) return false;
    if (this.#seen.size > 10_000) {
      for (const [n, t] of this.#seen) if (now - t > HANDSHAKE_WINDOW_MS) this.#seen.delete(n);
    }
    this.#seen.set(nonce, now);
    return true;
  }
}

/**
 * A random nonce for a handshake.
 *
 * @example
 * ```ts
 * newNonce(); // e.g. "9f1c2a7e4b5d6c8a"
 * ```
 */
export function newNonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(8)).buffer);
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
  return toHex(crypto.getRandomValues(new Uint8Array(32)).buffer);
}
