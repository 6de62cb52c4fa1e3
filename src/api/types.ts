// The IpipTunnel resource as the agent sees it. The CRD in crds/ipiptunnels.yaml is the
// schema the API server enforces; validate.ts mirrors it for input that never passed
// through an API server (standalone manifests) and as defence in depth.

export const API_GROUP = 'tunnel.ipip-operator.dev';
export const API_VERSION = `${API_GROUP}/v1alpha1`;
export const KIND = 'IpipTunnel';

export type TunnelMode = 'ipip';

export interface UnderlaySpec {
  address?: string;
  interface?: string;
}

export interface EndpointSpec {
  nodeName: string;
  underlay?: UnderlaySpec;
  overlayAddress: string;
  networks?: string[];
  /** Source-NAT, on this endpoint's node, what the other endpoints send beyond it. */
  masquerade?: boolean;
}

export interface IpipTunnelSpec {
  mode?: TunnelMode;
  ttl?: number;
  mtu?: number;
  linkName?: string;
  endpoints: EndpointSpec[];
  routes?: string[];
  /** Mesh only: drop IPIP from any host but the peers (and the remotes of other IPIP devices on the address). */
  dropForeignIpip?: boolean;
}

/**
 * One node's report on one tunnel, in that node's IpipNode (written only by the node's
 * own agent): the underlay address it resolved (its peers read it from here) and whether
 * the tunnel is programmed there.
 */
export interface NodeTunnelStatus {
  /** The IpipTunnel's metadata.name. */
  name: string;
  underlayAddress?: string;
  linkName?: string;
  ready?: boolean;
  reason?: string;
  message?: string;
  /** The tunnel's generation this report is about. */
  observedGeneration?: number;
}

export const NODE_KIND = 'IpipNode';

/**
 * A node's facts for every tunnel it is an endpoint of: one object per node (named after
 * the Node), the way Cilium keeps a CiliumNode. Peers learn each other's underlay
 * addresses from here, so one agent's report is one small watch event per agent, not a
 * write of a big tunnel object that every agent receives.
 */
export interface IpipNode {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    uid?: string;
    resourceVersion?: string;
    ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string }>;
  };
  tunnels?: NodeTunnelStatus[];
  /** Ready tunnels of all listed, "2/3", for kubectl get. */
  readySummary?: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface IpipTunnelStatus {
  observedGeneration?: number;
  readyEndpoints?: number;
  totalEndpoints?: number;
  readySummary?: string;
  conditions?: Condition[];
}

export interface ObjectMeta {
  name: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

export interface IpipTunnel {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: IpipTunnelSpec;
  status?: IpipTunnelStatus;
}

/** A spec with every default applied: what resolve works from. */
export interface EffectiveSpec {
  mode: TunnelMode;
  ttl: number;
  mtu?: number;
  linkName: string;
  endpoints: EndpointSpec[];
  routes: string[];
  /** true unless the spec says false; resolve uses it for meshes only. */
  dropForeignIpip: boolean;
}

/** One problem with an input, named by the field path a user would look at. */
export interface FieldError {
  field: string;
  message: string;
}
