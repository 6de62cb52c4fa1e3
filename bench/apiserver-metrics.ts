// The API server's own counters, as the cluster benchmarks read them (bench/mesh.ts,
// bench/cluster-scale.ts): one scrape of /metrics, summed by what the tables show.

import { kubectlOk } from '../test/harness/apiserver.ts';
import type { ApiServer } from '../test/harness/apiserver.ts';

/** The API server's counters we read: requests by verb and resource[/subresource], watch bytes and events by resource. */
export async function serverMetrics(api: ApiServer): Promise<Map<string, number>> {
  const text = await kubectlOk(api, ['get', '--raw', '/metrics'], undefined, 60_000);
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m =
      /^(apiserver_watch_events_sizes_sum|apiserver_watch_events_total|apiserver_request_total)\{([^}]*)\} ([0-9.e+]+)$/.exec(
        line,
      );
    if (m === null) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const resource = `${labels.resource ?? ''}${labels.subresource ? `/${labels.subresource}` : ''}`;
    if (resource === '') continue;
    const key =
      m[1] === 'apiserver_request_total'
        ? `requests ${labels.verb} ${resource}`
        : `${m[1] === 'apiserver_watch_events_total' ? 'events' : 'bytes'} ${resource}`;
    found.set(key, (found.get(key) ?? 0) + Number(m[3]));
  }
  return found;
}
