// The sysctl driver reads net.ipv4.ip_forward from a /proc/sys tree (here a directory the
// test makes); what it cannot read or understand is "not known", never a guess.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SysctlDriver } from '../../src/dataplane/sysctl/driver.ts';

test('net.ipv4.ip_forward: 1 is on, 0 is off, anything else or nothing at all is unknown', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sysctl-'));
  try {
    const file = join(root, 'net/ipv4/ip_forward');
    const driver = new SysctlDriver(root);
    assert.equal(await driver.ipv4Forwarding(), undefined, 'no such file');
    mkdirSync(join(root, 'net/ipv4'), { recursive: true });
    for (const [text, want] of [
      ['1\n', true],
      ['0\n', false],
      ['2\n', undefined],
      ['', undefined],
    ] as const) {
      writeFileSync(file, text);
      assert.equal(await driver.ipv4Forwarding(), want, JSON.stringify(text));
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('on this machine it reads what /proc says', async () => {
  const { readFileSync } = await import('node:fs');
  const proc = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  assert.equal(await new SysctlDriver().ipv4Forwarding(), proc === '1');
});
