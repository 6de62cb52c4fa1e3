// Standalone mode: no cluster. The tunnels come from a manifest file; the node's kernel is
// reconciled once (--once) or continuously: when the file changes, when the kernel
// changes, on a periodic resync, and with backoff while a tunnel has problems.

import { readFile } from 'node:fs/promises';
import { watch as watchFs } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseManifest } from '../api/manifest.ts';
import type { IpipTunnel } from '../api/types.ts';
import type { Dataplane } from '../dataplane/dataplane.ts';
import { NO_INTEREST } from '../dataplane/monitor.ts';
import type { KernelInterest } from '../dataplane/monitor.ts';
import type { Logger } from '../report/log.ts';
import type { TunnelProblem } from '../resolve/types.ts';
import { countChanges, kernelInterest, reconcile } from './reconcile.ts';
import type { ChangeCounts } from './reconcile.ts';
import { backoffMs, CoalescingRunner } from './runner.ts';

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

/** Reads and validates the manifest; throws InputError naming the field on bad input. */
export async function loadManifest(path: string): Promise<IpipTunnel[]> {
  return parseManifest(await readFile(path, 'utf8'), path);
}

export async function reconcileOnce(options: Omit<StandaloneOptions, 'resyncMs' | 'debounceMs'>): Promise<OnceSummary> {
  const tunnels = await loadManifest(options.manifestPath);
  const outcome = await reconcile(options.dataplane, { nodeName: options.nodeName, tunnels, nodeAddresses: new Map() }, options.log);
  return { changes: countChanges(outcome.results), errors: outcome.problems };
}

/**
 * Runs until the returned stop() is called. A manifest that fails to load never removes
 * anything: the last good one stays in force (and before the first good one, nothing runs).
 */
export function runStandalone(options: StandaloneOptions): { stop: () => Promise<void> } {
  const { log } = options;
  let lastGood: IpipTunnel[] | undefined;
  let failuresInARow = 0;
  /** What the kernel monitor wakes us for: what the last reconcile programmed (routes of ours, on our links, for our prefixes). */
  let interest: KernelInterest = NO_INTEREST;

  const runner = new CoalescingRunner(async () => {
    try {
      lastGood = await loadManifest(options.manifestPath);
    } catch (error) {
      log.error('manifest rejected; keeping the last good one', { manifest: options.manifestPath, error: String((error as Error).message) });
    }
    if (lastGood === undefined) return undefined;
    try {
      const outcome = await reconcile(options.dataplane, { nodeName: options.nodeName, tunnels: lastGood, nodeAddresses: new Map() }, log);
      interest = kernelInterest(outcome);
      if (outcome.problems.length === 0) {
        failuresInARow = 0;
        return undefined;
      }
    } catch (error) {
      log.error('reconcile failed', { node: options.nodeName, error: String(error) });
    }
    failuresInARow += 1;
    return backoffMs(failuresInARow);
  }, { debounceMs: options.debounceMs });

  // Watch the directory, not the file: editors and `kubectl`-style tools replace files.
  const fileWatcher = watchFs(dirname(options.manifestPath), (_event, name) => {
    if (name === null || name === basename(options.manifestPath)) runner.request();
  });
  const stopMonitor = options.dataplane.watch((concernsUs) => { if (concernsUs) runner.request(); }, () => interest);
  const resync = setInterval(() => runner.request(), options.resyncMs);
  runner.request(0);
  log.info('agent started', { mode: 'standalone', node: options.nodeName, manifest: options.manifestPath });

  return {
    stop: async () => {
      clearInterval(resync);
      fileWatcher.close();
      stopMonitor();
      await runner.stop();
    },
  };
}
