/**
 * The record log counts the entries it wrote, exactly: compaction (entries > 2 * live + 10,000)
 * depends on it. It used to count an epoch line per group commit that it had not written, so under
 * lone IAMATs (one record per commit) it rewrote the whole log every ~5,000 commits instead of
 * ~10,000 (found by the adversarial review adv9).
 */

import assert from "node:assert/strict";
import { openLogPersistence } from "../servers/persist.ts";
import { RecordStore } from "../servers/store.ts";
import { errorBus, storedRecord as record } from "./_helpers/records.ts";

Deno.test("record log: a log of 7,000 one-record commits for one client is not compacted (limit 2 * 2 + 10,000 entries)", async () => {
  // tmpfs: 7,000 fdatasyncs on ext4 take minutes on a shared box.
  const dir = await Deno.makeTempDir({ dir: "/dev/shm" });
  try {
    const { bus } = errorBus();
    const p = await openLogPersistence(dir, "Hill");
    const store = new RecordStore();
    await p.load(store, [], bus);
    const commits = 7000;
    for (let i = 1; i <= commits; i++) {
      const r = record("lone", i, { time: `${1621464827 + i}` });
      store.offer(r, -1);
      p.saved(store.get(r.client)!);
      await p.flush(); // one group commit now (the 10 ms tick would make this minutes)
    }
    await p.close();
    const entries = (await Deno.readTextFile(`${dir}/Hill.records`)).split("\n").length - 1;
    // The epoch line, every record appended and the clean stop: 7,002 entries, under the 10,004
    // that compaction waits for. A compaction would leave 2 lines plus the appends after it.
    assert.equal(
      entries,
      commits + 2,
      `the log was compacted at ~${commits + 2 - entries} entries: ${entries} lines left`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
