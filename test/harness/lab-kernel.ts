// The project's own User-Mode Linux kernel (Linux 6.12 with nftables for ip/ip6/inet, nat
// and masquerade, every tunnel mode built in, no io_uring), built from Debian's
// linux-source-6.12 by scripts/uml-kernel.sh and cached outside the checkout. Every guest
// boots it (Guest.boot() of uml.ts) unless asked for Debian's. scripts/test.sh and
// scripts/lab.sh build it before anything starts; a cold build here is the fallback.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './apiserver.ts';
import { REPO } from './repo.ts';

const buildScript = join(REPO, 'scripts/uml-kernel.sh');

const kernels = new Map<string, Promise<string>>();

/**
 * The path of the lab kernel's binary, or of a variant's (scripts/uml-kernel-VARIANT.config).
 * Runs scripts/uml-kernel.sh once per process and variant (a cold build takes about 11
 * minutes on 2 cores; after that it answers at once).
 */
export function labKernel(variant = ''): Promise<string> {
  let kernel = kernels.get(variant);
  if (kernel === undefined) {
    kernel = build(variant);
    kernels.set(variant, kernel);
  }
  return kernel;
}

async function build(variant: string): Promise<string> {
  const { code, stdout, stderr } = await run('bash', [buildScript, ...(variant === '' ? [] : [variant])], {
    // A first build is minutes long: let the person see its progress.
    onStderr: (chunk) => process.stderr.write(chunk),
  });
  const path = stdout.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || path === '' || !existsSync(path)) {
    throw new Error(
      `cannot build the lab kernel${variant === '' ? '' : `'s ${variant} variant`} (scripts/uml-kernel.sh ${variant} exited ${code}):\n` +
        `${stderr.trim().split('\n').slice(-40).join('\n')}\n` +
        'The first build needs Debian packages: apt-get install -y linux-source-6.12 flex bison bc gcc make ' +
        '(the script installs them itself when it runs as root); run scripts/uml-kernel.sh by hand to see it whole. ' +
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, as the user would read it
        'The kernel is cached in ${IPIP_KERNEL_CACHE:-~/.cache/ipip-operator/kernel}.',
    );
  }
  return path;
}
