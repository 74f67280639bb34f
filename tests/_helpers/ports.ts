/**
 * Listening ports for tests, unique across every test process on the machine. A port that is
 * merely free when picked can be picked again by a test file running in parallel (or another
 * checkout's suite) before either server binds it; so each port handed out is leased: a file
 * `<port>` created exclusively in a directory all test processes share. A lease is never
 * released early (a test may restart a server on its port at any time) and expires after
 * {@linkcode LEASE_MS}, long after any test file ends.
 *
 * Ports come from below the kernel's ephemeral range: with thousands of client sockets open in
 * parallel tests, a port in that range can be taken by an outgoing connection while a server
 * is down.
 *
 * @module
 */

/** Where leases live: shared by every test process of this user. */
const LEASE_DIR = `${Deno.env.get("TMPDIR") ?? "/tmp"}/herd-test-ports`;
/** A lease older than this is stale (its test process is long gone) and may be taken over. */
export const LEASE_MS = 30 * 60_000;
/** The lowest port handed out (below: well-known and registered services). */
const MIN_PORT = 10_000;

/** The kernel's ephemeral range starts here (32768 where it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(
      Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > MIN_PORT + 1000 ? low : 32768;
  } catch {
    return 32768;
  }
}

const MAX_PORT = Math.min(ephemeralLow(), 32768); // exclusive

/** True when this process now holds the lease on `port`. */
function lease(port: number): boolean {
  const path = `${LEASE_DIR}/${port}`;
  const take = () => {
    try {
      Deno.writeTextFileSync(path, `${Deno.pid}\n`, { createNew: true });
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return false;
      throw err;
    }
  };
  if (take()) return true;
  let mtime: Date | null = null;
  try {
    mtime = Deno.statSync(path).mtime;
  } catch {
    return take(); // released meanwhile
  }
  if (mtime === null || Date.now() - mtime.getTime() < LEASE_MS) return false;
  // Stale: move it aside first. Only one process's rename can succeed, so two processes that
  // both saw it stale cannot both take the port over.
  const aside = `${path}.stale.${Deno.pid}.${crypto.randomUUID()}`;
  try {
    Deno.renameSync(path, aside);
  } catch {
    return false;
  }
  Deno.removeSync(aside);
  return take();
}

/** True when nothing on this machine listens on `port` now. */
function bindable(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * `n` distinct ports no other test process got from this function within the last
 * {@linkcode LEASE_MS} and that nothing listens on now.
 *
 * @example
 * ```ts
 * const [a, b] = leasePorts(2);
 * ```
 */
export function leasePorts(n: number): number[] {
  Deno.mkdirSync(LEASE_DIR, { recursive: true });
  const ports: number[] = [];
  for (let tries = 0; ports.length < n && tries < 10_000; tries++) {
    const port = MIN_PORT + Math.floor(Math.random() * (MAX_PORT - MIN_PORT));
    if (ports.includes(port) || !lease(port)) continue;
    if (bindable(port)) ports.push(port);
  }
  if (ports.length < n) {
    throw new Error(`could not lease ${n} free ports in ${MIN_PORT}-${MAX_PORT} (${LEASE_DIR})`);
  }
  return ports;
}
