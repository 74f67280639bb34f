/**
 * Hosts on one machine for tests: a network namespace per server, each with one veth into a
 * bridge that lives in a hub namespace of its own, and one veth from the hub to the test's
 * (root) namespace so the test talks to the servers directly. Addresses are 10.213.X.0/24 on
 * interfaces this helper creates; the namespaces have no other route, so no packet can leave the
 * machine, and the host's own interfaces, routes and firewall are never touched (the bridge is not
 * in the root namespace, so the host's FORWARD rules do not see the herd's traffic).
 *
 * Faults are made inside the server namespaces, on arrival (INPUT), so senders see no error, as
 * with a real cut: a partition is iptables DROP rules on the other side's addresses; a slow lossy
 * link is a tbf qdisc on both ends of a server's veth plus random DROP (iptables `statistic`) of
 * its herd traffic. (netem would do both, but kernels built without
 * sch_netem, such as this project's Firecracker VMs, lack it; tbf and xt_statistic are common.)
 *
 * Every name carries the test process's PID, so runs never collide; `close()` removes every
 * namespace and interface, and a failed `create()` removes what it made.
 *
 * @module
 */

/** Under CI a test that cannot make namespaces fails instead of being skipped. */
export const IN_CI = Boolean(Deno.env.get("CI"));

interface RunResult {
  ok: boolean;
  out: string;
}

/** Runs a command to completion; never throws (a missing binary is `ok: false`). */
async function run(cmd: string, args: string[], stdin?: string): Promise<RunResult> {
  try {
    const child = new Deno.Command(cmd, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const r = await child.output();
    const d = new TextDecoder();
    return { ok: r.success, out: (d.decode(r.stdout) + d.decode(r.stderr)).trim() };
  } catch (err) {
    return { ok: false, out: `${cmd}: ${(err as Error).message}` };
  }
}

/** Runs a command; throws with its output when it fails. */
async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(" ")}: ${r.out}`);
  return r.out;
}

/**
 * Why namespaces cannot be made here, or undefined when they can: root, `ip`, `iptables` and
 * `tc`, and a probe that makes a namespace with a bridge, a veth pair, a tbf qdisc and an
 * iptables `statistic` rule (the features the tests use), then removes it.
 */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return `not Linux (${Deno.build.os})`;
  if (Deno.uid() !== 0) return "not root (network namespaces need CAP_NET_ADMIN)";
  for (const [tool, arg] of [["ip", "-V"], ["iptables", "--version"], ["tc", "-V"]]) {
    const r = await run(tool, [arg]);
    if (!r.ok) return `no working \`${tool}\` (apt-get install iproute2 iptables): ${r.out}`;
  }
  const ns = `herdprobe${Deno.pid}`;
  const made = await run("ip", ["netns", "add", ns]);
  if (!made.ok) return `cannot make a network namespace: ${made.out}`;
  try {
    const steps: [string, string[]][] = [
      ["ip", ["-n", ns, "link", "add", "br0", "type", "bridge"]],
      ["ip", ["-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]],
      ["ip", ["-n", ns, "link", "set", "v0", "up"]],
      ["ip", ["netns", "exec", ns, "tc", "qdisc", "add", "dev", "v0", "root", ...tbf(1000)]],
    ];
    for (const [cmd, args] of steps) {
      const r = await run(cmd, args);
      if (!r.ok) return `\`${cmd} ${args.join(" ")}\` failed: ${r.out}`;
    }
    const rules = restoreInput([":p - [0:0]", "-A INPUT -j p", `-A p ${LOSS("10.213.0.1", 5)}`]);
    const r = await run("ip", ["netns", "exec", ns, "iptables-restore", "--noflush"], rules);
    if (!r.ok) return `iptables-restore (with the statistic match) failed: ${r.out}`;
    return undefined;
  } finally {
    await run("ip", ["netns", "del", ns]);
  }
}

/** A tbf qdisc: `kbit` kbit/s, bursts of 4 KiB, at most 400 ms of queue (then drops). */
function tbf(kbit: number): string[] {
  return ["tbf", "rate", `${kbit}kbit`, "burst", "4kb", "latency", "400ms"];
}

/** An iptables rule body that drops `percent` % of the packets from `addr`. */
function LOSS(addr: string, percent: number): string {
  return `-s ${addr} -m statistic --mode random --probability ${percent / 100} -j DROP`;
}

/** `iptables-restore --noflush` input: these lines applied to the filter table at once. */
function restoreInput(lines: string[]): string {
  return ["*filter", ...lines, "COMMIT", ""].join("\n");
}

/**
 * Removes what earlier runs left when they were killed before their `finally` (their PID is
 * gone): the processes still inside their namespaces, then the namespaces (and with them their
 * veths, the uplinks included).
 */
async function sweepStale(): Promise<void> {
  const list = (await run("ip", ["netns", "list"])).out;
  for (const m of list.matchAll(/^(hn(\d+)-\S+)/gm)) {
    const [, ns, pid] = m;
    if (Number(pid) === Deno.pid || await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) {
      continue;
    }
    for (const p of (await run("ip", ["netns", "pids", ns])).out.split(/\s+/)) {
      if (/^\d+$/.test(p)) {
        try {
          Deno.kill(Number(p), "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    await run("ip", ["netns", "del", ns]);
  }
}

/** User chains in each server namespace, jumped to from INPUT and OUTPUT. */
const PART = "herd-part";
const LOSSY = "herd-loss";

/** A bridged test network of named hosts; see the module doc. */
export class TestNet {
  /** Prefix of every namespace and interface name of this run. */
  readonly id: string;
  readonly names: readonly string[];
  #subnet: number;
  #made: string[] = []; // namespaces, in creation order
  #rootIf: string;

  private constructor(names: readonly string[], subnet: number) {
    this.id = `hn${Deno.pid}`;
    this.names = names;
    this.#subnet = subnet;
    this.#rootIf = `${this.id}r`; // <= 15 bytes: "hn" + PID (<= 7 digits) + "r"
  }

  /** The hub namespace holding the bridge. */
  get hub(): string {
    return `${this.id}-hub`;
  }

  /** The test's own address on the bridge (clients in the test connect from it). */
  get testAddress(): string {
    return `10.213.${this.#subnet}.254`;
  }

  /** A host's namespace. */
  ns(name: string): string {
    return `${this.id}-${this.#index(name)}`;
  }

  /** A host's address. */
  address(name: string): string {
    return `10.213.${this.#subnet}.${this.#index(name) + 1}`;
  }

  /** The command prefix that runs a program inside a host's namespace. */
  wrap(name: string): string[] {
    return ["ip", "netns", "exec", this.ns(name)];
  }

  #index(name: string): number {
    const i = this.names.indexOf(name);
    if (i === -1) throw new Error(`no host ${name}`);
    return i;
  }

  /** Makes the network (hub with bridge, one namespace per name, the uplink to the test). */
  static async create(names: readonly string[]): Promise<TestNet> {
    if (names.length > 250) throw new Error("at most 250 hosts");
    await sweepStale();
    // A /24 no interface of this machine already routes (another run's, or the host's).
    const routes = await must("ip", ["-4", "route", "show"]);
    let subnet = 0;
    for (let k = 0; k < 254 && subnet === 0; k++) {
      const x = ((Deno.pid + k) % 254) + 1;
      if (!routes.includes(`10.213.${x}.`)) subnet = x;
    }
    if (subnet === 0) throw new Error("no free 10.213.X.0/24 subnet");
    const net = new TestNet(names, subnet);
    try {
      await net.#build();
    } catch (err) {
      await net.close();
      throw err;
    }
    return net;
  }

  async #build(): Promise<void> {
    const hub = this.hub;
    await this.#addNs(hub);
    await must("ip", ["-n", hub, "link", "add", "br0", "type", "bridge"]);
    await must("ip", ["-n", hub, "link", "set", "br0", "up"]);
    // The uplink: its root end gets the test's address (and with it the subnet's only route
    // in the root namespace); its hub end is a bridge port.
    await must("ip", [
      "link",
      "add",
      this.#rootIf,
      "type",
      "veth",
      "peer",
      "name",
      "up0",
      "netns",
      hub,
    ]);
    await must("ip", ["addr", "add", `${this.testAddress}/24`, "dev", this.#rootIf]);
    await must("ip", ["link", "set", this.#rootIf, "up"]);
    await must("ip", ["-n", hub, "link", "set", "up0", "master", "br0", "up"]);
    await Promise.all(this.names.map(async (name, i) => {
      const ns = this.ns(name);
      await this.#addNs(ns);
      await must("ip", [
        "-n",
        hub,
        "link",
        "add",
        `p${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      ]);
      await must("ip", ["-n", hub, "link", "set", `p${i}`, "master", "br0", "up"]);
      await must("ip", ["-n", ns, "addr", "add", `${this.address(name)}/24`, "dev", "eth0"]);
      await must("ip", ["-n", ns, "link", "set", "eth0", "up"]);
      await must("ip", ["-n", ns, "link", "set", "lo", "up"]);
      await this.#iptables(name, [
        `:${PART} - [0:0]`,
        `:${LOSSY} - [0:0]`,
        `-A INPUT -j ${PART}`,
        `-A INPUT -j ${LOSSY}`,
      ]);
    }));
  }

  async #addNs(ns: string): Promise<void> {
    await must("ip", ["netns", "add", ns]);
    this.#made.push(ns);
  }

  /** Runs a command inside a namespace; throws when it fails unless `check` is false. */
  async #in(ns: string, args: string[], check = true): Promise<string> {
    const r = await run("ip", ["netns", "exec", ns, ...args]);
    if (!r.ok && check) throw new Error(`ip netns exec ${ns} ${args.join(" ")}: ${r.out}`);
    return r.out;
  }

  /**
   * Applies iptables-restore lines in a host's namespace as one transaction, so replacing a
   * partition never opens a gap (and it takes one process, not one per rule).
   */
  async #iptables(name: string, lines: string[]): Promise<void> {
    const ns = this.ns(name);
    const r = await run(
      "ip",
      ["netns", "exec", ns, "iptables-restore", "--noflush"],
      restoreInput(lines),
    );
    if (!r.ok) throw new Error(`iptables-restore in ${ns}: ${r.out}\n${lines.join("\n")}`);
  }

  /**
   * Cuts the network into groups (every host in one). Each host drops, as they arrive, the
   * packets of hosts in other groups, as a cut wire would: senders get no error, their SYNs and
   * segments just go unanswered. Replaces any earlier partition; the test's own address stays
   * reachable from every host.
   */
  async partition(groups: readonly (readonly string[])[]): Promise<void> {
    const groupOf = new Map<string, number>();
    groups.forEach((g, i) => g.forEach((n) => groupOf.set(n, i)));
    if (groupOf.size !== this.names.length || this.names.some((n) => !groupOf.has(n))) {
      throw new Error(`a partition must place every host once: ${JSON.stringify(groups)}`);
    }
    await Promise.all(this.names.map((name) => {
      const others = this.names.filter((o) => groupOf.get(o) !== groupOf.get(name));
      return this.#iptables(name, [
        `-F ${PART}`,
        ...others.map((o) => `-A ${PART} -s ${this.address(o)} -j DROP`),
      ]);
    }));
  }

  /**
   * Makes a host's link slow and lossy: `kbit` kbit/s each way (tbf on both ends of its veth),
   * and `lossPercent` % of the packets between it and every other host dropped at random where
   * they arrive, each way. Its traffic with the test's address is slowed but not dropped.
   */
  async degrade(name: string, opts: { kbit: number; lossPercent: number }): Promise<void> {
    const i = this.#index(name);
    const qdisc = tbf(opts.kbit);
    await this.#in(this.ns(name), ["tc", "qdisc", "replace", "dev", "eth0", "root", ...qdisc]);
    await this.#in(this.hub, ["tc", "qdisc", "replace", "dev", `p${i}`, "root", ...qdisc]);
    const lossPercent = opts.lossPercent;
    const others = this.names.filter((o) => o !== name);
    await Promise.all([
      this.#iptables(name, others.map((o) => `-A ${LOSSY} ${LOSS(this.address(o), lossPercent)}`)),
      ...others.map((o) =>
        this.#iptables(o, [`-A ${LOSSY} ${LOSS(this.address(name), lossPercent)}`])
      ),
    ]);
  }

  /**
   * What the faults did so far, from the kernel's counters: packets dropped by partition and
   * loss rules (all hosts), and packets the rate limits held back (tbf "overlimits") or dropped.
   */
  async counters(): Promise<{ partitioned: number; lost: number; overlimits: number }> {
    const sum = (text: string, re: RegExp) =>
      [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
    // `iptables -L CHAIN -v -x -n`: rule lines start with their packet count.
    const rulePackets = /^\s*(\d+)\s+\d+\s+DROP/gm;
    let partitioned = 0, lost = 0, overlimits = 0;
    for (const name of this.names) {
      const ns = this.ns(name);
      partitioned += sum(
        await this.#in(ns, ["iptables", "-w", "-L", PART, "-v", "-x", "-n"]),
        rulePackets,
      );
      lost += sum(
        await this.#in(ns, ["iptables", "-w", "-L", LOSSY, "-v", "-x", "-n"]),
        rulePackets,
      );
      overlimits += sum(
        await this.#in(ns, ["tc", "-s", "qdisc", "show", "dev", "eth0"]),
        /overlimits (\d+)/g,
      );
    }
    overlimits += sum(await this.#in(this.hub, ["tc", "-s", "qdisc", "show"]), /overlimits (\d+)/g);
    return { partitioned, lost, overlimits };
  }

  /** Removes every partition, loss and rate limit. */
  async heal(): Promise<void> {
    await Promise.all(this.names.map(async (name, i) => {
      await this.#iptables(name, [`-F ${PART}`, `-F ${LOSSY}`]);
      // "del" fails when there is no qdisc of ours: that is fine.
      await this.#in(this.ns(name), ["tc", "qdisc", "del", "dev", "eth0", "root"], false);
      await this.#in(this.hub, ["tc", "qdisc", "del", "dev", `p${i}`, "root"], false);
    }));
  }

  /**
   * Removes the namespaces (with them every veth and the bridge) and the uplink. Kill the
   * processes running in them first: a namespace lives on while a process is inside.
   */
  async close(): Promise<void> {
    for (const ns of this.#made.reverse()) await run("ip", ["netns", "del", ns]);
    this.#made = [];
    // Gone with its peer in the hub already; this is for a build that failed half-way.
    await run("ip", ["link", "del", this.#rootIf]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** What this run left behind (should be nothing after close): namespaces and the uplink. */
  async leftovers(): Promise<string[]> {
    const left: string[] = [];
    const list = (await run("ip", ["netns", "list"])).out;
    for (const line of list.split("\n")) {
      const ns = line.split(" ")[0];
      if (ns.startsWith(`${this.id}-`)) left.push(`netns ${ns}`);
    }
    if ((await run("ip", ["link", "show", this.#rootIf])).ok) left.push(`link ${this.#rootIf}`);
    return left;
  }
}

/**
 * A test of hosts in network namespaces (one per name in `names`): where namespaces cannot be
 * made it is skipped, loudly, and under CI it fails instead; `fn` gets the network, closed after
 * it whatever happens, then checked for namespaces or links left behind.
 *
 * @example
 * ```ts
 * netnsTest("two hosts can be cut apart", ["A", "B"], async (net) => {
 *   await net.partition([["A"], ["B"]]);
 * });
 * ```
 */
export function netnsTest(
  name: string,
  names: readonly string[],
  fn: (net: TestNet) => Promise<void>,
): void {
  const unavailable = probed;
  if (unavailable !== undefined && !IN_CI) {
    console.warn(
      `\n!!! NETNS TEST SKIPPED (${name}): ${unavailable}. It needs root, iproute2 and ` +
        `iptables (.ci/run installs them). Under CI it fails instead.\n`,
    );
  }
  Deno.test({
    name,
    ignore: unavailable !== undefined && !IN_CI,
    async fn() {
      if (unavailable !== undefined) {
        throw new Error(`network namespaces are required under CI: ${unavailable}`);
      }
      const net = await TestNet.create(names);
      try {
        await fn(net);
      } finally {
        await net.close();
      }
      const left = await net.leftovers();
      if (left.length > 0) throw new Error(`namespaces or links left behind: ${left.join(", ")}`);
    },
  });
}

/** Why namespaces cannot be made here (probed once per test module that registers such tests). */
const probed = await netnsUnavailable();
