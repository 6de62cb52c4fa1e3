// How the chart runs the agent (deploy/helm/ipip-operator/templates/daemonset.yaml): uid 0
// with every capability dropped but NET_ADMIN, no privilege escalation, a read-only root.
// setpriv gives a process in a lab node the same: the guests' root is the host's / mounted
// read-only, and the agent's only writable place is /tmp (a tmpfs, as the chart's emptyDir).

/** The command prefix that runs a process with only CAP_NET_ADMIN (bounding, permitted, effective) and no_new_privs. */
export const AS_THE_CHART_RUNS_IT = [
  'setpriv',
  '--no-new-privs',
  '--bounding-set=-all,+net_admin',
  '--inh-caps=-all',
  '--',
];

/** CAP_NET_ADMIN (bit 12) alone, as /proc/PID/status prints a capability set. */
export const NET_ADMIN_ONLY = '0000000000001000';

/** The capability sets and no_new_privs of a process, from /proc/PID/status. */
export function privilegesOf(status: string): Record<string, string> {
  const wanted = ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs'];
  return Object.fromEntries(
    status
      .split('\n')
      .map((line) => line.split(':').map((x) => x.trim()))
      .filter(([key]) => wanted.includes(key ?? '')),
  );
}
