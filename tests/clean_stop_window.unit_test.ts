/**
 * Found by a review of this session's changes (review11 #1) (unit form): after a clean start the log ends with `C 1` until the first commit.
 * A kill -9 in that window (a record taken and flooded, not yet committed: the commit is up to
 * 10 ms away, and records are flooded before it) leaves a log that the next start takes for a
 * clean stop: the old epoch is kept, and the next record reuses the sequence number the
 * neighbours got for the lost one (adv10b #1 again). "What a kill leaves" is the file's bytes
 * at that moment, copied to another dir (the first log still holds its lock).
 */

import assert from "node:assert/strict";
import { openLogPersistence } from "../servers/persist.ts";
import { RecordStore } from "../servers/store.ts";
import { errorBus, storedRecord } from "./_helpers/records.ts";

Deno.test("record log: killed before the first commit after a clean start, the next start takes a fresh epoch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "review11-clean-" });
  const killed = await Deno.makeTempDir({ prefix: "review11-killed-" });
  try {
    // A first run: one record, a clean stop (the log ends with C 1).
    const first = await openLogPersistence(dir, "Hill");
    const s1 = new RecordStore();
    await first.load(s1, [], errorBus().bus);
    first.saved(storedRecord("c1", 1));
    await first.flush();
    await first.close();
    assert.match(await Deno.readTextFile(`${dir}/Hill.records`), / C 1\n$/);

    // A clean start keeps the epoch; it takes record 2 (flooded at once), and is killed
    // before the commit: the disk holds what it held at the start.
    const second = await openLogPersistence(dir, "Hill");
    const s2 = new RecordStore();
    await second.load(s2, [], errorBus().bus);
    const epoch = s2.epoch;
    second.saved(storedRecord("c2", 2));
    await Deno.copyFile(`${dir}/Hill.records`, `${killed}/Hill.records`);
    await second.close();

    const third = await openLogPersistence(killed, "Hill");
    const s3 = new RecordStore();
    const { bus, errors } = errorBus();
    await third.load(s3, [], bus);
    await third.close();
    assert.equal(s3.headSeq, 1, "record 2 was never on disk");
    assert.notEqual(
      s3.epoch,
      epoch,
      `the same epoch ${epoch} with head 1: the next record is numbered 2 again, and a ` +
        `neighbour that got the lost record 2 skips it (errors: ${
          errors.map((e) => e.reason).join(",") || "none"
        })`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(killed, { recursive: true });
  }
});
