// The write files of the drivers. A tool reads its batch (ip) or transaction (nft) from a
// file, not a pipe: an agent killed while writing a pipe leaves the tool a cut-off last
// line to run ("route del 10.1.0.0/24 proto 203" cut to "route del 10.1.0.0/24"; an nft
// script cut after `delete table`), while a file is whole before the tool starts, and the
// tool reads it to the end even when the agent dies meanwhile. File I/O only, no process.

import { randomUUID } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Files older than this are left by an agent killed during a write (a live write takes
 * at most the tool's timeout); a new agent removes them.
 */
const STALE_MS = 10 * 60_000;

/** One driver's write files: in `dir` (an in-memory emptyDir in the chart), named after `prefix`. */
export class BatchFiles {
  private readonly dir: string;
  private readonly prefix: string;
  /** Set once the files of an earlier, killed agent have been looked for (at the first write). */
  private staleRemoved = false;

  constructor(dir: string, prefix: string) {
    this.dir = dir;
    this.prefix = prefix;
  }

  get directory(): string {
    return this.dir;
  }

  private removeStale(): void {
    if (this.staleRemoved) return;
    this.staleRemoved = true;
    try {
      for (const name of readdirSync(this.dir)) {
        if (!name.startsWith(this.prefix)) continue;
        const path = join(this.dir, name);
        if (Date.now() - statSync(path).mtimeMs > STALE_MS) rmSync(path, { force: true });
      }
    } catch {
      // Nothing to clean, or not ours to clean: the write will say what is wrong with the dir.
    }
  }

  /**
   * Writes `text` to a new file of this process (mode 0600, never over an existing one),
   * runs `use` with its path and removes it afterwards. A file that cannot be written
   * gives `{ writeError }` and `use` is not run.
   */
  async with<T>(text: string, use: (path: string) => Promise<T>): Promise<T | { writeError: string }> {
    this.removeStale();
    const file = join(this.dir, `${this.prefix}${process.pid}-${randomUUID()}`);
    try {
      await writeFile(file, text, { flag: 'wx', mode: 0o600 });
    } catch (error) {
      return { writeError: (error as Error).message };
    }
    try {
      return await use(file);
    } finally {
      await rm(file, { force: true });
    }
  }
}
