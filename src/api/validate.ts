// Validation and defaults for IpipTunnel objects. Mirrors the CRD's schema and CEL rules
// (crds/ipiptunnels.yaml) so that input which never passed an API server (standalone
// manifests) is held to the same rules, with the same field paths in the messages.

import { isIPv4, isIPv4Prefix, prefixContains } from '../net/ipv4.ts';
import { defaultLinkName, linkNameProblem, MAX_TUNNEL_NAME, objectNameProblem } from './names.ts';
import { API_VERSION, KIND } from './types.ts';
import type { EffectiveSpec, EndpointSpec, FieldError, IpipTunnel } from './types.ts';

export const DEFAULT_TTL = 64;
export const MIN_ENDPOINTS = 2;
/**
 * The CRD's limits. The CEL rules that compare endpoints with each other cost
 * endpoints^2 x networks; the API server refuses a CRD whose estimated cost is over its
 * budget, and 200 endpoints of 8 networks each is what fits (measured on 1.34).
 */
export const MAX_ENDPOINTS = 200;
export const MAX_NETWORKS = 8;
export const MAX_PREFIXES = 64;
export const MIN_MTU = 68;
export const MAX_MTU = 65515;

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isInteger(v: Json): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

/**
 * A value as a message shows it: a scalar as JSON, cut short; a list or an object by kind.
 * Never the whole of it: a manifest's YAML aliases can make a small text a value with
 * billions of members (every alias is the same object), which JSON.stringify would expand.
 */
export function shown(v: Json): string {
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object' && v !== null) return 'an object';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 64 ? `${text.slice(0, 60)}...` : text;
}

class Collector {
  readonly errors: FieldError[] = [];
  add(field: string, message: string): void {
    this.errors.push({ field, message });
  }
}

/**
 * Fields the schema does not know are errors, as `kubectl` strict field validation makes
 * them: a typo like `tll` must not silently become the default.
 */
function checkKnownFields(c: Collector, field: string, obj: Record<string, Json>, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key))
      c.add(field === '' ? key : `${field}.${key}`, `unknown field "${key}" (known: ${known.join(', ')})`);
  }
}

const TOP_FIELDS = ['apiVersion', 'kind', 'metadata', 'spec', 'status'] as const;
/** ObjectMeta's fields: a manifest saved with `kubectl get -o yaml` carries them. */
const METADATA_FIELDS = [
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
] as const;
const SPEC_FIELDS = ['mode', 'ttl', 'mtu', 'linkName', 'dropForeignIpip', 'endpoints', 'routes'] as const;
const ENDPOINT_FIELDS = ['nodeName', 'underlay', 'overlayAddress', 'networks', 'masquerade'] as const;
const UNDERLAY_FIELDS = ['address', 'interface'] as const;

function checkIPv4(c: Collector, field: string, value: Json, example: string): void {
  if (typeof value !== 'string') c.add(field, 'must be a string');
  else if (!isIPv4(value)) c.add(field, `must be an IPv4 address like ${example}, got "${value}"`);
}

function checkPrefixList(c: Collector, field: string, value: Json, example: string, max: number): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    c.add(field, 'must be a list of IPv4 prefixes');
    return;
  }
  if (value.length > max) c.add(field, `must have at most ${max} items`);
  const seen = new Set<string>();
  value.forEach((item: Json, i) => {
    const f = `${field}[${i}]`;
    if (typeof item !== 'string') c.add(f, 'must be a string');
    else if (!isIPv4Prefix(item)) {
      c.add(f, `must be an IPv4 network prefix like ${example}, with no host bits set, got "${item}"`);
    } else if (seen.has(item)) c.add(f, `duplicate value "${item}"`);
    else seen.add(item);
  });
}

function checkLinkName(c: Collector, field: string, value: Json): void {
  if (typeof value !== 'string') {
    c.add(field, 'must be a string');
    return;
  }
  const problem = linkNameProblem(value);
  if (problem !== undefined) c.add(field, problem);
}

function checkEndpoint(c: Collector, field: string, e: Json): void {
  if (!isObject(e)) {
    c.add(field, 'must be an object');
    return;
  }
  checkKnownFields(c, field, e, ENDPOINT_FIELDS);
  if (typeof e.nodeName !== 'string') c.add(`${field}.nodeName`, 'is required');
  else {
    const problem = objectNameProblem(e.nodeName, 253);
    if (problem !== undefined) c.add(`${field}.nodeName`, problem);
  }
  if (e.overlayAddress === undefined) c.add(`${field}.overlayAddress`, 'is required');
  else checkIPv4(c, `${field}.overlayAddress`, e.overlayAddress, '172.0.0.2');
  if (e.underlay !== undefined) {
    if (!isObject(e.underlay)) c.add(`${field}.underlay`, 'must be an object');
    else {
      checkKnownFields(c, `${field}.underlay`, e.underlay, UNDERLAY_FIELDS);
      if (e.underlay.address !== undefined) {
        checkIPv4(c, `${field}.underlay.address`, e.underlay.address, '192.168.40.2');
      }
      if (e.underlay.interface !== undefined) {
        checkLinkName(c, `${field}.underlay.interface`, e.underlay.interface);
      }
    }
  }
  checkPrefixList(c, `${field}.networks`, e.networks, '10.20.0.0/16', MAX_NETWORKS);
  checkBoolean(c, `${field}.masquerade`, e.masquerade);
}

function checkBoolean(c: Collector, field: string, value: Json): void {
  if (value !== undefined && typeof value !== 'boolean') c.add(field, `must be true or false, got ${shown(value)}`);
}

/**
 * The fallback devices the kernel creates when a tunnel module loads. tunl0 is any/any:
 * brought up, it takes every IPIP packet no other device matches, from anyone. The agent
 * never configures them (a link of that name is not its own anyway).
 */
export const FALLBACK_DEVICES: readonly string[] = [
  'tunl0',
  'gre0',
  'gretap0',
  'erspan0',
  'sit0',
  'ip6tnl0',
  'ip6gre0',
  'ip_vti0',
  'ip6_vti0',
];

/**
 * Checks one object against the IpipTunnel schema. Returns the problems, each naming its
 * field; an empty list means the object is a valid IpipTunnel.
 */
export function validateTunnel(obj: Json): FieldError[] {
  const c = new Collector();
  if (!isObject(obj)) {
    c.add('', 'must be an object');
    return c.errors;
  }
  checkKnownFields(c, '', obj, TOP_FIELDS);
  if (obj.apiVersion !== API_VERSION) c.add('apiVersion', `must be ${API_VERSION}`);
  if (obj.kind !== KIND) c.add('kind', `must be ${KIND}`);
  const meta = obj.metadata;
  if (isObject(meta)) checkKnownFields(c, 'metadata', meta, METADATA_FIELDS);
  if (!isObject(meta) || typeof meta.name !== 'string') c.add('metadata.name', 'is required');
  else {
    const problem = objectNameProblem(meta.name, MAX_TUNNEL_NAME);
    if (problem !== undefined) c.add('metadata.name', problem);
  }
  const spec = obj.spec;
  if (!isObject(spec)) {
    c.add('spec', 'is required');
    return c.errors;
  }
  checkKnownFields(c, 'spec', spec, SPEC_FIELDS);
  if (spec.mode !== undefined && spec.mode !== 'ipip') {
    c.add('spec.mode', `must be "ipip" (the only mode so far), got ${shown(spec.mode)}`);
  }
  if (spec.ttl !== undefined && !(isInteger(spec.ttl) && spec.ttl >= 0 && spec.ttl <= 255)) {
    c.add('spec.ttl', `must be an integer from 0 (inherit) to 255, got ${shown(spec.ttl)}`);
  }
  if (spec.mtu !== undefined && !(isInteger(spec.mtu) && spec.mtu >= MIN_MTU && spec.mtu <= MAX_MTU)) {
    c.add('spec.mtu', `must be an integer from ${MIN_MTU} to ${MAX_MTU}, got ${shown(spec.mtu)}`);
  }
  if (spec.linkName !== undefined) checkLinkName(c, 'spec.linkName', spec.linkName);
  if (typeof spec.linkName === 'string' && FALLBACK_DEVICES.includes(spec.linkName)) {
    c.add(
      'spec.linkName',
      `${spec.linkName} is a fallback device the kernel creates for its tunnel modules (tunl0 takes IPIP from anyone when up); ipip-operator never uses it`,
    );
  }
  checkBoolean(c, 'spec.dropForeignIpip', spec.dropForeignIpip);
  checkPrefixList(c, 'spec.routes', spec.routes, '172.0.0.0/24', MAX_PREFIXES);

  const endpoints = spec.endpoints;
  if (!Array.isArray(endpoints)) {
    c.add('spec.endpoints', 'is required: a list of at least 2 endpoints');
    return c.errors;
  }
  if (endpoints.length < MIN_ENDPOINTS) {
    c.add('spec.endpoints', `must have at least ${MIN_ENDPOINTS} endpoints, got ${endpoints.length}`);
  }
  if (endpoints.length > MAX_ENDPOINTS) {
    c.add('spec.endpoints', `must have at most ${MAX_ENDPOINTS} endpoints, got ${endpoints.length}`);
  }
  // In a mesh a prefix must say which endpoint it goes to, which a shared list cannot.
  if (endpoints.length > 2 && Array.isArray(spec.routes) && spec.routes.length > 0) {
    c.add(
      'spec.routes',
      `routes into the tunnel are for a point-to-point tunnel of 2 endpoints; a mesh of ${endpoints.length} ` +
        'routes each prefix to the endpoint whose networks list it',
    );
  }
  const nodes = new Map<string, number>();
  const overlays = new Map<string, number>();
  endpoints.forEach((e: Json, i) => {
    const field = `spec.endpoints[${i}]`;
    checkEndpoint(c, field, e);
    if (!isObject(e)) return;
    if (typeof e.nodeName === 'string') {
      const first = nodes.get(e.nodeName);
      if (first !== undefined) {
        c.add(
          `${field}.nodeName`,
          `node "${e.nodeName}" is already spec.endpoints[${first}]; a node can be an endpoint once`,
        );
      } else nodes.set(e.nodeName, i);
    }
    if (typeof e.overlayAddress === 'string') {
      const first = overlays.get(e.overlayAddress);
      if (first !== undefined) {
        c.add(
          `${field}.overlayAddress`,
          `${e.overlayAddress} is already the overlayAddress of spec.endpoints[${first}]; each endpoint needs its own`,
        );
      } else overlays.set(e.overlayAddress, i);
    }
  });
  // An overlay address that is also an underlay address would route the tunnel's own
  // outer packets into the tunnel: the two nodes lose each other.
  endpoints.forEach((e: Json, i) => {
    if (!isObject(e) || typeof e.overlayAddress !== 'string') return;
    const j = endpoints.findIndex(
      (o: Json) => isObject(o) && isObject(o.underlay) && o.underlay.address === e.overlayAddress,
    );
    if (j >= 0) {
      c.add(
        `spec.endpoints[${i}].overlayAddress`,
        `${e.overlayAddress} is the underlay address of spec.endpoints[${j}]; an overlay address must not be an underlay address`,
      );
    }
  });
  checkNetworksAcrossEndpoints(c, endpoints);
  return c.errors;
}

/**
 * Across endpoints: a network belongs to one endpoint (every other routes it there), and no
 * network may hold an overlay address (the overlay's own /32 routes would fight it).
 */
function checkNetworksAcrossEndpoints(c: Collector, endpoints: Json[]): void {
  const overlays = endpoints
    .map((e, i) => ({ address: isObject(e) && typeof e.overlayAddress === 'string' ? e.overlayAddress : '', i }))
    .filter((o) => isIPv4(o.address));
  const owner = new Map<string, number>();
  endpoints.forEach((e: Json, i) => {
    if (!isObject(e) || !Array.isArray(e.networks)) return;
    e.networks.forEach((n: Json, j) => {
      if (typeof n !== 'string' || !isIPv4Prefix(n)) return;
      const field = `spec.endpoints[${i}].networks[${j}]`;
      const first = owner.get(n);
      if (first !== undefined && first !== i) {
        c.add(field, `${n} is already a network of spec.endpoints[${first}]; a network is behind one endpoint`);
      } else owner.set(n, i);
      const inside = overlays.find((o) => prefixContains(n, o.address));
      if (inside !== undefined) {
        c.add(
          field,
          `${n} holds ${inside.address}, the overlayAddress of spec.endpoints[${inside.i}]; networks must be outside the overlay addresses`,
        );
      }
    });
  });
}

/** The spec with every default applied. Call only on a tunnel that validated. */
export function effectiveSpec(tunnel: IpipTunnel): EffectiveSpec {
  const s = tunnel.spec;
  const spec: EffectiveSpec = {
    mode: s.mode ?? 'ipip',
    ttl: s.ttl ?? DEFAULT_TTL,
    linkName: s.linkName ?? defaultLinkName(tunnel.metadata.name),
    endpoints: s.endpoints.map((e: EndpointSpec) => ({ ...e })),
    routes: [...(s.routes ?? [])],
    dropForeignIpip: s.dropForeignIpip !== false,
  };
  if (s.mtu !== undefined) spec.mtu = s.mtu;
  return spec;
}
