// The rest of a control plane beside the test API server (apiserver.ts), for a lab whose
// nodes run kubelets: kube-controller-manager (the DaemonSet controller creates a pod per
// node, the garbage collector removes what an uninstall leaves, the service-account and
// root-CA publishers give pods their token's CA) and kube-scheduler (which places the
// DaemonSet's pods). Both are built by scripts/cluster-tools.sh at the API server's
// version, run in its network namespace, and authenticate with client certificates as
// system:kube-controller-manager and system:kube-scheduler, the users the API server's
// bootstrap RBAC grants their roles to. One instance each, so no leader election.

import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startChild } from './apiserver.ts';
import type { ApiServer } from './apiserver.ts';
import { certKubeconfigYaml, issueCertificate } from './certificates.ts';

export interface ControlPlane {
  /** The last lines of both logs, for the message of a failed wait. */
  logTails(lines?: number): string;
  stop(): Promise<void>;
}

interface Component {
  name: 'kube-controller-manager' | 'kube-scheduler';
  args: string[];
}

/** Starts kube-controller-manager and kube-scheduler against the API server. */
export function startControlPlane(api: ApiServer): ControlPlane {
  const dir = join(api.dir, 'control-plane');
  const ca = { cert: api.caFile, key: api.caKey };
  const kubeconfigFor = (user: string): string => {
    const cert = issueCertificate(dir, user.replace(/^system:/, ''), ca, { commonName: user, usage: ['client'] });
    const path = join(dir, `${user.replace(/^system:/, '')}.kubeconfig`);
    writeFileSync(path, certKubeconfigYaml(api.server, api.caFile, cert, user), { mode: 0o600 });
    return path;
  };
  // Each talks to the API server, and checks who calls it, as its own user.
  const asUser = (user: string): string[] => {
    const kubeconfig = kubeconfigFor(user);
    return [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
    ];
  };
  const components: Component[] = [
    {
      name: 'kube-controller-manager',
      args: [
        ...asUser('system:kube-controller-manager'),
        // Each controller acts as its own ServiceAccount, as kubeadm runs it.
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${join(api.dir, 'sa.key')}`,
        `--root-ca-file=${api.caFile}`,
        '--leader-elect=false',
        // Not served: nothing here scrapes it.
        '--secure-port=0',
        '--cluster-name=ipip-lab',
        '--v=1',
      ],
    },
    {
      name: 'kube-scheduler',
      args: [...asUser('system:kube-scheduler'), '--leader-elect=false', '--secure-port=0', '--v=1'],
    },
  ];
  const running: Array<{ name: string; child: ChildProcess; log: string }> = components.map(({ name, args }) => {
    const log = join(dir, `${name}.log`);
    return { name, child: startChild(join(api.binDir, name), args, log, api.netns), log };
  });
  const tail = (log: string, lines: number): string => {
    try {
      return readFileSync(log, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  return {
    logTails: (lines = 20) =>
      running
        .map(
          (r) =>
            `--- ${r.name}${r.child.exitCode === null ? '' : ` (exited ${r.child.exitCode})`}:\n${tail(r.log, lines)}`,
        )
        .join('\n'),
    stop: async () => {
      await Promise.all(
        running.map(
          ({ child }) =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
            }),
        ),
      );
    },
  };
}
