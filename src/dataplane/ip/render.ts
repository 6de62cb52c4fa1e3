// The one renderer of `ip` commands: the ip driver feeds its output to `ip -batch`, the
// plan CLI prints it, golden tests compare it. Every token is checked here, last, so that
// nothing a user wrote can become an option, a second command or a comment in the batch.

import type { IpAction, IpOperation } from '../../model/action.ts';
import type { TunnelAttrs } from '../../model/tunnel.ts';

/** Names, IPv4 addresses and prefixes, numbers, keywords and the ownership alias. */
const SAFE_TOKEN = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$/;

export function assertSafeToken(token: string): string {
  if (!SAFE_TOKEN.test(token))
    throw new Error(`refusing to pass ${JSON.stringify(token)} to ip: not a plain name, address or number`);
  return token;
}

/**
 * `type MODE ...` of `ip link add|set`. A new mode's arguments go here. Unset addresses
 * are left out when adding and given as "any" when changing, which clears them.
 */
function tunnelArgs(t: TunnelAttrs, changing: boolean): string[] {
  const args = ['type', t.mode];
  const address = (keyword: string, value: string | undefined) => {
    if (value !== undefined) args.push(keyword, value);
    else if (changing) args.push(keyword, 'any');
  };
  address('local', t.local);
  address('remote', t.remote);
  args.push('ttl', String(t.ttl));
  if (t.underlayDevice !== undefined) args.push('dev', t.underlayDevice);
  return args;
}

/** One operation as the argument vector of `ip`, without the leading "ip". */
export function ipArgv(o: IpOperation): string[] {
  switch (o.op) {
    case 'link-add':
      return [
        'link',
        'add',
        'name',
        o.link.name,
        'mtu',
        String(o.link.mtu),
        'group',
        String(o.group),
        ...tunnelArgs(o.link.tunnel, false),
      ];
    case 'link-set-alias':
      return ['link', 'set', 'dev', o.name, 'alias', o.alias];
    case 'link-set-tunnel':
      return ['link', 'set', 'dev', o.name, ...tunnelArgs(o.tunnel, true)];
    case 'link-set-mtu':
      return ['link', 'set', 'dev', o.name, 'mtu', String(o.mtu)];
    case 'link-set-up':
      return ['link', 'set', 'dev', o.name, 'up'];
    case 'link-del':
      return ['link', 'del', 'dev', o.name];
    case 'address-add':
    case 'address-del': {
      const a = o.address;
      const peer = a.peer === undefined ? [] : ['peer', `${a.peer}/32`];
      return ['address', o.op === 'address-add' ? 'add' : 'del', `${a.local}/${a.prefixlen}`, ...peer, 'dev', a.dev];
    }
    case 'route-replace': {
      const r = o.route;
      const via = r.via === undefined ? [] : ['via', r.via];
      return [
        'route',
        'replace',
        r.dst,
        ...via,
        'dev',
        r.dev,
        ...(r.onlink === true ? ['onlink'] : []),
        'proto',
        String(o.protocol),
      ];
    }
    case 'route-del': {
      const args = ['route', 'del', o.dst, 'proto', String(o.protocol)];
      if (o.dev !== undefined) args.push('dev', o.dev);
      if (o.metric !== 0) args.push('metric', String(o.metric));
      return args;
    }
  }
}

/** One command as a batch line (and, with "ip " before it, as a shell line). */
export function renderIpLine(argv: readonly string[]): string {
  return argv.map(assertSafeToken).join(' ');
}

/** The batch lines of an action, one per operation, in order. */
export function ipLines(action: IpAction): string[] {
  return action.ops.map((o) => renderIpLine(ipArgv(o)));
}
