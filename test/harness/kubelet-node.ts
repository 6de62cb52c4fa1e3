// A lab node as a cluster has it: containerd and a kubelet in the node's kernel (a UML
// guest booted with a writable root, GuestOptions.writableRoot), the kubelet registering
// its own Node (its InternalIP is --node-ip, the node's eth1 address) with a client
// certificate of system:node:NAME, so the Node authorizer and NodeRestriction judge what
// it may do, and serving on 10250 with a certificate the API server checks (kubectl logs
// and exec). No registry is reachable, so the images a pod needs (the pause image of the
// sandboxes, the project's image) are imported from OCI archives with ctr, and pods use
// imagePullPolicy Never.
//
// What a real node has that the lab does not:
// - kube-proxy and a default route: one DNAT rule (table ip lab-kube-proxy) and a /32
//   route via the bridge send the kubernetes Service
//   (KUBERNETES_SERVICE_HOST 10.0.0.1:443, what in-cluster clients use) to the API server;
// - a CNI network for pods: a bridge configuration only, so the runtime reports its
//   network ready and the Node is Ready; hostNetwork pods (the agent's) never use it;
// - DNS: none.
// UML's /proc/cpuinfo has no "cpu MHz" line, without which the kubelet will not start; a
// copy with one is bind-mounted over it.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KUBERNETES_SERVICE_IP, run } from './apiserver.ts';
import { certKubeconfigYaml, issueCertificate } from './certificates.ts';
import type { ClusterLab } from './cluster-lab.ts';
import { REPO } from './repo.ts';
import { requireCommands } from './uml.ts';

/** The sandbox image the lab builds (scripts/pause-image.sh); containerd's sandbox_image. */
export const PAUSE_IMAGE = 'localhost/ipip-lab/pause:1';
/** The nft table of the lab's stand-in for kube-proxy in each node. */
export const SERVICE_TABLE = 'lab-kube-proxy';

export const KUBELET_NODE_HINT =
  'apt-get install -y containerd runc containernetworking-plugins (or run scripts/setup.sh, which installs them)';

/** Fails with how to install them when containerd, runc or the CNI plugins are missing (guests run the machine's). */
export function requireKubeletNodeParts(): void {
  requireCommands(['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc'], KUBELET_NODE_HINT);
  if (!existsSync('/usr/lib/cni/bridge')) throw new Error(`missing /usr/lib/cni/bridge: ${KUBELET_NODE_HINT}`);
}

export interface KubeletNodeOptions {
  /** OCI archives (with the image name inside) to import into the node's containerd. */
  images: string[];
  /** Extra kubelet flags. */
  kubeletArgs?: string[];
}

const CONTAINERD_CONFIG = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`;

/** A bridge network for pods that are not hostNetwork (none in the lab): what makes the runtime's network ready. */
function cniConfig(podCidr: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'lab',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: podCidr }]] },
      },
      { type: 'loopback' },
    ],
  });
}

function kubeletConfig(files: { ca: string; cert: string; key: string }): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // As a real cluster has it: no anonymous requests, and every request to the kubelet
      // authorized by the API server (SubjectAccessReview).
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: files.ca } },
      authorization: { mode: 'Webhook' },
      tlsCertFile: files.cert,
      tlsPrivateKeyFile: files.key,
      readOnlyPort: 0,
      cgroupDriver: 'cgroupfs',
      containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
      failSwapOn: false,
      resolvConf: '/etc/resolv.conf',
      // The images cannot be pulled again: never collect them.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // The node's disks are its memory (tmpfs): evict only when it is really short.
      evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '5%', 'imagefs.available': '5%' },
      serializeImagePulls: false,
      // The lab's reboots and restarts are waited on: report a change in seconds.
      nodeStatusUpdateFrequency: '5s',
      syncFrequency: '10s',
    },
    null,
    2,
  );
}

/**
 * Starts containerd and the kubelet in a node's guest (booted with writableRoot) and
 * imports the images (the caller waits for its Node to be Ready). Files go under the API
 * server's dir (nodes/NAME), which the guest reads through its root.
 */
export async function startKubelet(lab: ClusterLab, node: string, opts: KubeletNodeOptions): Promise<void> {
  // A guest has a /tmp of its own (guest-init.sh) unless the checkout is in it: it runs the
  // kubelet and reads the images from the machine's files, so they must be where it sees them.
  for (const path of [lab.api.binDir, ...opts.images])
    if (path.startsWith('/tmp/') && !REPO.startsWith('/tmp/'))
      throw new Error(
        `kubelet nodes cannot see ${path}: a lab node's /tmp is its own. ` +
          'Keep the caches elsewhere (IPIP_TOOLS_CACHE, IPIP_IMAGE_CACHE; by default under ~/.cache/ipip-operator).',
      );
  const api = lab.api;
  const address = lab.nodes[node];
  if (address === undefined) throw new Error(`kubelet: no lab node ${node}`);
  const guest = lab.guest(node);
  const dir = join(api.dir, 'nodes', node);
  const ca = { cert: api.caFile, key: api.caKey };
  const client = issueCertificate(dir, 'kubelet-client', ca, {
    commonName: `system:node:${node}`,
    organizations: ['system:nodes'],
    usage: ['client'],
  });
  const serving = issueCertificate(dir, 'kubelet-serving', ca, {
    commonName: `system:node:${node}`,
    organizations: ['system:nodes'],
    usage: ['server'],
    ips: [address],
    dnsNames: [node],
  });
  await guest.writeFile('/run/lab/kubelet.kubeconfig', certKubeconfigYaml(api.server, api.caFile, client, node));
  await guest.writeFile(
    '/run/lab/kubelet.yaml',
    kubeletConfig({ ca: api.caFile, cert: serving.cert, key: serving.key }),
  );
  const apiAddress = new URL(api.server);
  const index = Object.keys(lab.nodes).indexOf(node);
  await guest.ok(
    [
      // containerd's overlay snapshots cannot sit on the overlay root: a tmpfs of their own.
      'mkdir -p /var/lib/containerd /etc/containerd /etc/cni/net.d /var/lib/kubelet /var/log/pods',
      '{ mountpoint -q /var/lib/containerd || mount -t tmpfs -o mode=0711 tmpfs /var/lib/containerd; }',
      '{ mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; }',
      // The controllers the kubelet's pod cgroups use (UML has no cpuset).
      "echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control",
      // The kubelet reads the clock speed from "cpu MHz", which UML does not print.
      '{ mountpoint -q /proc/cpuinfo || ' +
        `{ awk '{ print } /^processor/ { print "cpu MHz\\t\\t: 1000.000" }' /proc/cpuinfo > /run/lab/cpuinfo && ` +
        'mount --bind /run/lab/cpuinfo /proc/cpuinfo; }; }',
      // kube-proxy's one job here: the kubernetes Service to the API server.
      `ip route replace ${KUBERNETES_SERVICE_IP}/32 via ${apiAddress.hostname} dev eth1`,
      `nft -f - <<'NFT'
table ip ${SERVICE_TABLE} {
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr ${KUBERNETES_SERVICE_IP} tcp dport 443 dnat to ${apiAddress.hostname}:${apiAddress.port}
  }
}
NFT`,
    ].join(' && '),
  );
  await guest.writeFile('/etc/containerd/config.toml', CONTAINERD_CONFIG);
  await guest.writeFile('/etc/cni/net.d/10-lab.conflist', cniConfig(`10.244.${index}.0/24`));
  await lab.startInGuest(node, 'containerd', ['containerd', '--config', '/etc/containerd/config.toml']);
  await guest.ok(
    'i=0; until ctr version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 300 ] || { echo containerd did not answer; exit 1; }; sleep 0.1; done',
    60_000,
  );
  for (const image of opts.images) await guest.ok(`ctr -n k8s.io images import ${quote(image)} >/dev/null`, 180_000);
  await lab.startInGuest(node, 'kubelet', [
    join(api.binDir, 'kubelet'),
    '--config=/run/lab/kubelet.yaml',
    '--kubeconfig=/run/lab/kubelet.kubeconfig',
    `--node-ip=${address}`,
    `--hostname-override=${node}`,
    '--v=1',
    ...(opts.kubeletArgs ?? []),
  ]);
}

function quote(word: string): string {
  if (!/^[A-Za-z0-9/._:@-]+$/.test(word)) throw new Error(`kubelet: unexpected characters in ${word}`);
  return word;
}

/** The OCI archives every kubelet node imports: the project's image and the pause image. */
export interface NodeImages {
  agent: string;
  pause: string;
}

/**
 * Builds (or finds, cached by their inputs) the project's image (scripts/image.sh, from the
 * Dockerfile) and the pause image (scripts/pause-image.sh); their archives.
 */
export async function nodeImages(): Promise<NodeImages> {
  const build = async (script: string): Promise<string> => {
    const r = await run('bash', [join(REPO, 'scripts', script)], {
      timeoutMs: 1_800_000,
      onStderr: (chunk) => process.stderr.write(chunk),
    });
    const archive = r.stdout.trim().split('\n').at(-1) ?? '';
    if (r.code !== 0 || !existsSync(archive))
      throw new Error(
        `scripts/${script} exited ${r.code} without an image archive:\n${r.stderr.split('\n').slice(-30).join('\n')}`,
      );
    return archive;
  };
  return { agent: await build('image.sh'), pause: await build('pause-image.sh') };
}
