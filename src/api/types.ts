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
}

export interface IpipTunnelSpec {
  mode?: TunnelMode;
  ttl?: number;
  mtu?: number;
  linkName?: string;
  endpoints: EndpointSpec[];
  routes?: string[];
}

export interface EndpointStatus {
  nodeName: string;
  underlayAddress?: string;
  linkName?: string;
  ready?: boolean;
  reason?: string;
  message?: string;
  observedGeneration?: number;
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
  endpoints?: EndpointStatus[];
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
}

/** One problem with an input, named by the field path a user would look at. */
export interface FieldError {
  field: string;
  message: string;
}
