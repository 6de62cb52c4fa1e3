// The sysctl driver: reads the kernel settings the agent checks and never writes (a
// node's forwarding is its administrator's choice). A file read per reconcile, no process.

import { readFile } from 'node:fs/promises';

export interface SysctlReader {
  /** net.ipv4.ip_forward; undefined when it cannot be read. */
  ipv4Forwarding(): Promise<boolean | undefined>;
}

export class SysctlDriver implements SysctlReader {
  private readonly root: string;

  /** `root`: where /proc/sys is (tests may point it elsewhere). */
  constructor(root = '/proc/sys') {
    this.root = root;
  }

  async ipv4Forwarding(): Promise<boolean | undefined> {
    try {
      const text = (await readFile(`${this.root}/net/ipv4/ip_forward`, 'utf8')).trim();
      return text === '1' ? true : text === '0' ? false : undefined;
    } catch {
      return undefined;
    }
  }
}
