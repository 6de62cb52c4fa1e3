// The dataplane of a real node: every tool's driver, composed.

import { KernelDataplane } from './dataplane.ts';
import type { Dataplane } from './dataplane.ts';
import { IpDriver } from './ip/driver.ts';
import type { IpDriverOptions } from './ip/driver.ts';
import { NftDriver } from './nft/driver.ts';
import type { NftDriverOptions } from './nft/driver.ts';
import { SysctlDriver } from './sysctl/driver.ts';

/** Options for every driver: the observer, the monitor's error log, timeouts and batch dir are shared. */
export type NodeDataplaneOptions = IpDriverOptions & NftDriverOptions;

export function nodeDataplane(options: NodeDataplaneOptions = {}): Dataplane {
  return new KernelDataplane({ ip: new IpDriver(options), nft: new NftDriver(options), sysctl: new SysctlDriver() });
}
