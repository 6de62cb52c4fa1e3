// IpipTunnel manifests the API must refuse, each made from one valid tunnel by one
// small mutation, with the field path the error must name. The cluster test applies
// them to a real API server (so the CRD's schema and CEL rules are what is tested);
// unit tests of our TypeScript validator can run the same table, so both agree.
//
// `field` is the path as the API server writes it in its error ("spec.routes[0]: ...").

/** A whole IpipTunnel object, as kubectl would send it. */
export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [k: string]: unknown };
  spec: Record<string, any>;
};

export interface BadTunnel {
  /** What is wrong, for test names. */
  name: string;
  /** The field path the rejection must mention. */
  field: string;
  manifest: Manifest;
}

/** The example tunnel (examples/tunnel.yaml), plus networks so those can go wrong too. */
export function validTunnel(name = 'lab'): Manifest {
  return {
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    kind: 'IpipTunnel',
    metadata: { name },
    spec: {
      mode: 'ipip',
      ttl: 64,
      linkName: 'ipiptun',
      endpoints: [
        {
          nodeName: 'node-a',
          underlay: { address: '192.168.40.2', interface: 'eth1' },
          overlayAddress: '172.0.0.2',
          networks: ['10.20.0.0/16'],
        },
        { nodeName: 'node-b', underlay: { address: '192.168.40.3', interface: 'eth1' }, overlayAddress: '172.0.0.3' },
      ],
      routes: ['172.0.0.0/24'],
    },
  };
}

// Each case gets its own metadata.name (bad-<n>), so that if the server wrongly
// accepts one, the next is a create again, not an update (CRD validation ratcheting
// lets unchanged invalid fields through on updates).
let n = 0;
function bad(name: string, field: string, mutate: (m: Manifest) => void): BadTunnel {
  const manifest = validTunnel(`bad-${++n}`);
  mutate(manifest);
  return { name, field, manifest };
}

const ep0 = 'spec.endpoints[0]';

export const badTunnels: BadTunnel[] = [
  // Addresses: isIP/isCIDR in CEL, IPv4 only.
  bad(
    'overlay address with an octet over 255',
    `${ep0}.overlayAddress`,
    (m) => (m.spec.endpoints[0].overlayAddress = '172.0.0.300'),
  ),
  bad(
    'overlay address with three octets',
    `${ep0}.overlayAddress`,
    (m) => (m.spec.endpoints[0].overlayAddress = '172.0.0'),
  ),
  bad('overlay address IPv6', `${ep0}.overlayAddress`, (m) => (m.spec.endpoints[0].overlayAddress = 'fd00::2')),
  bad(
    'overlay address with a prefix length',
    `${ep0}.overlayAddress`,
    (m) => (m.spec.endpoints[0].overlayAddress = '172.0.0.2/24'),
  ),
  bad('overlay address missing', `${ep0}.overlayAddress`, (m) => delete m.spec.endpoints[0].overlayAddress),
  // The overlay would carry the tunnel's own outer packets: the two nodes lose each other.
  bad('an overlay address that is the underlay address of an endpoint', 'spec.endpoints', (m) => {
    m.spec.endpoints[1].overlayAddress = '192.168.40.2';
  }),
  bad(
    'underlay address malformed',
    `${ep0}.underlay.address`,
    (m) => (m.spec.endpoints[0].underlay.address = '192.168.40'),
  ),
  bad(
    'underlay address IPv6',
    'spec.endpoints[1].underlay.address',
    (m) => (m.spec.endpoints[1].underlay.address = 'fd00::3'),
  ),
  bad(
    'underlay interface with a slash',
    `${ep0}.underlay.interface`,
    (m) => (m.spec.endpoints[0].underlay.interface = 'eth/1'),
  ),
  bad('route with host bits set', 'spec.routes[0]', (m) => (m.spec.routes = ['172.0.0.1/24'])),
  bad('route without a prefix length', 'spec.routes[0]', (m) => (m.spec.routes = ['172.0.0.0'])),
  bad('route IPv6', 'spec.routes[1]', (m) => (m.spec.routes = ['172.0.0.0/24', 'fd00::/64'])),
  bad(
    'network with a prefix length over 32',
    `${ep0}.networks[0]`,
    (m) => (m.spec.endpoints[0].networks = ['10.20.0.0/33']),
  ),
  bad('network with host bits set', `${ep0}.networks[0]`, (m) => (m.spec.endpoints[0].networks = ['10.20.0.1/16'])),
  bad('more than 8 networks on an endpoint', `${ep0}.networks`, (m) => {
    m.spec.endpoints[0].networks = Array.from({ length: 9 }, (_, i) => `10.${20 + i}.0.0/16`);
  }),
  // Every other endpoint routes a network to the one that lists it: two cannot.
  bad('a network behind two endpoints', 'spec.endpoints', (m) => (m.spec.endpoints[1].networks = ['10.20.0.0/16'])),
  // The overlay's /32 routes and the network's route would fight over the address.
  bad('a network that holds an overlay address', 'spec.endpoints', (m) => {
    m.spec.endpoints[0].networks = ['172.0.0.0/24'];
  }),
  // In a mesh a prefix needs an endpoint to go to: spec.routes cannot say which.
  bad('spec.routes in a mesh of three', 'spec.routes', (m) => {
    m.spec.endpoints.push({ nodeName: 'node-c', underlay: { address: '192.168.40.4' }, overlayAddress: '172.0.0.4' });
  }),
  bad('more than 200 endpoints', 'spec.endpoints', (m) => {
    delete m.spec.routes;
    m.spec.endpoints = Array.from({ length: 201 }, (_, i) => ({
      nodeName: `node-${i}`,
      underlay: { address: `192.168.${40 + Math.floor(i / 200)}.${(i % 200) + 2}` },
      overlayAddress: `172.0.${Math.floor(i / 250)}.${(i % 250) + 2}`,
    }));
  }),

  // linkName: a Linux interface name (IFNAMSIZ 16 with the NUL; dev_valid_name()).
  bad('linkName empty', 'spec.linkName', (m) => (m.spec.linkName = '')),
  bad('linkName longer than 15', 'spec.linkName', (m) => (m.spec.linkName = 'a234567890123456')),
  bad('linkName with a slash', 'spec.linkName', (m) => (m.spec.linkName = 'ipip/tun')),
  bad('linkName with a space', 'spec.linkName', (m) => (m.spec.linkName = 'ipip tun')),
  bad('linkName "."', 'spec.linkName', (m) => (m.spec.linkName = '.')),
  bad('linkName ".."', 'spec.linkName', (m) => (m.spec.linkName = '..')),
  // The kernel's fallback device: up, it takes IPIP from anyone.
  bad('linkName tunl0', 'spec.linkName', (m) => (m.spec.linkName = 'tunl0')),
  bad('masquerade not a boolean', `${ep0}.masquerade`, (m) => (m.spec.endpoints[0].masquerade = 'yes')),
  bad('dropForeignIpip not a boolean', 'spec.dropForeignIpip', (m) => (m.spec.dropForeignIpip = 1)),

  bad('ttl 256', 'spec.ttl', (m) => (m.spec.ttl = 256)),
  bad('ttl -1', 'spec.ttl', (m) => (m.spec.ttl = -1)),
  bad('mtu below 68', 'spec.mtu', (m) => (m.spec.mtu = 67)),
  bad('mode gre', 'spec.mode', (m) => (m.spec.mode = 'gre')),

  // Endpoints as a set.
  bad('only one endpoint', 'spec.endpoints', (m) => m.spec.endpoints.pop()),
  bad('no endpoints', 'spec.endpoints', (m) => delete m.spec.endpoints),
  bad('same nodeName twice', 'spec.endpoints[1]', (m) => (m.spec.endpoints[1].nodeName = 'node-a')),
  bad('same overlayAddress twice', 'spec.endpoints', (m) => (m.spec.endpoints[1].overlayAddress = '172.0.0.2')),
  bad('nodeName not a DNS subdomain', `${ep0}.nodeName`, (m) => (m.spec.endpoints[0].nodeName = 'Node_A')),

  // The name ends up in the link alias "ipip-operator/<name>".
  bad('metadata.name longer than 63', 'metadata.name', (m) => (m.metadata.name = `bad-${'x'.repeat(60)}`)),
];
