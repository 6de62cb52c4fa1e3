// Names that reach the kernel. Everything here is validated so that a value can be passed
// to `ip` as one batch token: no whitespace, quotes, '#', or leading '-'.

import { createHash } from 'node:crypto';

/** Linux allows 15 bytes (IFNAMSIZ - 1) for an interface name. */
export const MAX_LINK_NAME = 15;

/**
 * Stricter than the kernel's dev_valid_name on purpose: the kernel forbids only '/', ':'
 * and whitespace, but iproute2's batch parser gives meaning to quotes and '#', `ip` reads a
 * leading '-' as an option and '@' as "name@parent" in its output.
 */
const LINK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function linkNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > MAX_LINK_NAME) return `must be at most ${MAX_LINK_NAME} characters, got ${name.length}`;
  if (!LINK_NAME.test(name)) {
    return (
      "must be a Linux interface name: letters, digits, '_', '.' or '-', starting with a letter or " +
      "digit (so no '/', whitespace, '.' or '..')"
    );
  }
  return undefined;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes object names (Nodes, IpipTunnels): lowercase DNS subdomains. */
export function objectNameProblem(name: string, maxLength: number): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > maxLength) return `must be at most ${maxLength} characters, got ${name.length}`;
  if (!DNS_SUBDOMAIN.test(name)) return 'must be a lowercase DNS subdomain (a-z, 0-9, - and .)';
  return undefined;
}

/** Tunnel names are at most 63 characters so the ownership alias fits the kernel's 255. */
export const MAX_TUNNEL_NAME = 63;

/**
 * The default link name for a tunnel: "ipip-<name>" when that fits, else a prefix of the name
 * and a hash of all of it, so that two long names sharing a prefix never collide (the bug
 * kube-router has with truncated names).
 */
export function defaultLinkName(tunnelName: string): string {
  const plain = `ipip-${tunnelName}`;
  if (plain.length <= MAX_LINK_NAME && linkNameProblem(plain) === undefined) return plain;
  const hash = createHash('sha256').update(tunnelName).digest('hex').slice(0, 6);
  const stem = tunnelName.replace(/[^A-Za-z0-9]/g, '').slice(0, 4);
  return `ipip-${stem}${hash}`;
}
