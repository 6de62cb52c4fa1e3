// IPv4 text forms, strictly: the forms the CRD accepts and `ip` prints. Pure functions.

const OCTET = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;

/** A dotted quad with no leading zeros (CEL's isIP rejects them too, as ambiguous octal). */
export function isIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => OCTET.test(p));
}

export function ipv4ToNumber(text: string): number {
  return text.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function numberToIPv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

/** How many addresses a prefix of this length holds. */
export function prefixSize(length: number): number {
  return 2 ** (32 - length);
}

/** The network of an address (as a number) for a prefix length: its host bits cleared. */
export function networkOf(address: number, length: number): number {
  return address - (address % prefixSize(length));
}

/** "a.b.c.d/len" (or a bare address, as /32) as its network number and length; host bits are cleared. */
export function parsePrefix(prefix: string): { network: number; length: number } {
  const [address, length] = prefix.split('/');
  const len = Number(length ?? 32);
  return { network: networkOf(ipv4ToNumber(address!), len), length: len };
}

/** Whether an address lies inside a prefix ("10.20.0.0/16" holds 10.20.3.4). */
export function prefixContains(prefix: string, address: string): boolean {
  const { network, length } = parsePrefix(prefix);
  return networkOf(ipv4ToNumber(address), length) === network;
}

/** An IPv4 network prefix "a.b.c.d/len" with no host bits set. */
export function isIPv4Prefix(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const addr = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (!isIPv4(addr) || !/^(3[0-2]|[12]?[0-9])$/.test(lenText)) return false;
  return ipv4ToNumber(addr) % prefixSize(Number(lenText)) === 0;
}

/** The form `ip -json route` uses for a destination: host routes have no "/32", default is "default". */
export function normalizePrefix(dst: string): string {
  if (dst === 'default') return '0.0.0.0/0';
  return dst.includes('/') ? dst : `${dst}/32`;
}

/**
 * The prefixes (each with a length) that no other of them holds, deduplicated and sorted
 * by address then length: what an nftables interval set takes, since it refuses elements
 * that overlap. Two prefixes either nest or are apart, so this covers the same addresses.
 */
export function outermostPrefixes(prefixes: readonly string[]): string[] {
  const parsed = [...new Set(prefixes)].map((text) => ({ text, ...parsePrefix(text) }));
  parsed.sort((a, b) => a.network - b.network || a.length - b.length);
  const kept: typeof parsed = [];
  for (const p of parsed) {
    const outer = kept.at(-1);
    // Sorted so, a prefix inside another comes right after it or after one inside it too.
    if (outer !== undefined && outer.length <= p.length && networkOf(p.network, outer.length) === outer.network)
      continue;
    kept.push(p);
  }
  return kept.map((p) => `${numberToIPv4(p.network)}/${p.length}`);
}
