// The dataplane of a real node: every tool's driver, composed.

import { KernelDataplane } from './dataplane.ts';
import type { Dataplane } from './dataplane.ts';
import { IpDriver } from './ip/driver.ts';
import type { IpDriverOptions } from './ip/driver.ts';
import { SysctlDriver } from './sysctl/driver.ts';

export function nodeDataplane(options: IpDriverOptions = {}): Dataplane {
  return new KernelDataplane({ ip: new IpDriver(options), sysctl: new SysctlDriver() });
}
