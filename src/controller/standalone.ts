// Standalone mode: no cluster. The tunnels come from a manifest file; the node's kernel is
// reconciled once (--once) or continuously by the same loop as in a cluster (loop.ts),
// whose source here is the file: a change of it requests a reconcile, and each pass reads
// it. Reports go to the logs only.

import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { watch as watchFs } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { InputError, MAX_MANIFEST_BYTES, ManifestParser, parseManifest } from '../api/manifest.ts';
import type { IpipTunnel } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import type { TunnelProblem } from '../model/problem.ts';
import type { Logger } from '../report/log.ts';
import { countChanges } from '../report/report.ts';
import type { ChangeCounts } from '../report/report.ts';
import { NO_SINK, runAgentLoop } from './loop.ts';
import type { AgentLoop, TunnelSource } from './loop.ts';
import { reconcile } from './reconcile.ts';

export interface StandaloneOptions {
  manifestPath: string;
  nodeName: string;
  dataplane: Dataplane;
  log: Logger;
  resyncMs: number;
  debounceMs: number;
}

export interface OnceSummary {
  changes: ChangeCounts;
  errors: TunnelProblem[];
}

/**
 * The bytes of a manifest file: a regular file of at most MAX_MANIFEST_BYTES. A directory,
 * a device or a pipe is refused before anything is read (/dev/zero would never end), and
 * a file that grows while it is read is cut off at the limit and refused.
 */
async function readManifestBytes(path: string): Promise<Buffer> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new InputError(`${path}: cannot read the manifest: ${why}`);
  }
  try {
    const info = await file.stat();
    if (!info.isFile()) throw new InputError(`${path}: not a regular file (a manifest is a YAML file)`);
    if (info.size > MAX_MANIFEST_BYTES)
      throw new InputError(
        `${path}: ${info.size} bytes, more than the ${MAX_MANIFEST_BYTES} bytes a manifest may have`,
      );
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.max(info.size + 1 - length, 64 * 1024));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, length);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > MAX_MANIFEST_BYTES)
        throw new InputError(`${path}: more than the ${MAX_MANIFEST_BYTES} bytes a manifest may have`);
    }
    return Buffer.concat(chunks, length);
  } finally {
    await file.close();
  }
}

async function readManifestFile(path: string): Promise<string> {
  return (await readManifestBytes(path)).toString('utf8');
}

/** Reads and validates the manifest; throws InputError naming the file, document and field on bad input. */
export async function loadManifest(path: string): Promise<IpipTunnel[]> {
  return parseManifest(await readManifestFile(path), path);
}

export async function reconcileOnce(options: Omit<StandaloneOptions, 'resyncMs' | 'debounceMs'>): Promise<OnceSummary> {
  const tunnels = await loadManifest(options.manifestPath);
  const outcome = await reconcile(
    options.dataplane,
    { nodeName: options.nodeName, tunnels, nodeAddresses: new Map() },
    options.log,
  );
  return { changes: countChanges(outcome.results), errors: outcome.problems };
}

/**
 * The manifest as a tunnel source. A manifest that fails to load never removes anything:
 * the last good one stays in force (and before the first good one, nothing runs). Each pass
 * reads the file (a change the watcher missed is not missed for long); bytes the same as
 * the last good ones are not even decoded, and of other bytes only what changed is parsed
 * (ManifestParser). Decoding was most of an unchanged pass's manifest time in the lab's
 * guests: 16-20 ms for the 394 KB of 1,000 tunnels, where the read took 1-2 ms.
 */
export function manifestSource(manifestPath: string, log: Logger, parser = new ManifestParser()): TunnelSource {
  let lastGood: IpipTunnel[] | undefined;
  let lastGoodBytes: Buffer | undefined;
  let watcher: FSWatcher | undefined;
  return {
    start: (changed) => {
      // Watch the directory, not the file: editors and `kubectl`-style tools replace files.
      watcher = watchFs(dirname(manifestPath), (_event, name) => {
        if (name === null || name === basename(manifestPath)) changed();
      });
    },
    current: async () => {
      try {
        const bytes = await readManifestBytes(manifestPath);
        if (lastGoodBytes === undefined || !bytes.equals(lastGoodBytes)) {
          lastGood = parser.parse(bytes.toString('utf8'), manifestPath);
          lastGoodBytes = bytes;
        }
      } catch (error) {
        log.error('manifest rejected; keeping the last good one', {
          manifest: manifestPath,
          error: String((error as Error).message),
        });
      }
      // The same objects while the file is the same (the loop then knows nothing changed).
      return lastGood === undefined ? undefined : { tunnels: lastGood, nodeAddresses: NO_ADDRESSES };
    },
    ready: () => (lastGood === undefined ? 'no good manifest loaded yet' : true),
    stop: async () => {
      watcher?.close();
    },
  };
}

/** Standalone, no node publishes an address. */
const NO_ADDRESSES: ReadonlyMap<string, string> = new Map();

/** Runs until the returned stop() is called. */
export function runStandalone(options: StandaloneOptions): AgentLoop {
  const loop = runAgentLoop({ ...options, source: manifestSource(options.manifestPath, options.log), sink: NO_SINK });
  options.log.info('agent started', { mode: 'standalone', node: options.nodeName, manifest: options.manifestPath });
  return loop;
}
