// Which nftables events can change what a reconcile would do: those about the agent's own
// table, which is its whole, made by someone else. On a node whose kube-proxy (nftables
// mode) or firewall rewrites its own tables all the time, a reconcile per event would read
// for nothing; and the agent's own writes, which replace the whole table, must not wake it
// for a second pass. Pure: lines of `nft monitor` in, transactions out.

import { NFT_FAMILY, NFT_TABLE } from '../../model/ownership.ts';

/**
 * One line of `nft monitor` (text): an object added or deleted ("add rule ip ipip-operator
 * prerouting ...", "delete table ip ipip-operator"), or the end of a transaction, which
 * the kernel reports with the process that made it ("# new generation 12 by process 4567
 * (nft)"). The JSON output (`-j`) has no such line, which is why the text is read.
 */
export type NftMonitorLine = { kind: 'object'; ours: boolean } | { kind: 'generation'; pid: number | undefined };

const OUR_OBJECT = new RegExp(`^\\S+ \\S+ ${NFT_FAMILY} ${NFT_TABLE}(?:\\s|$)`);
const GENERATION = /^# new generation \d+(?: by process (\d+))?/;

/** A line that is neither an object nor a generation counts as one of ours (the safe side: it reads the table). */
export function parseNftMonitorLine(line: string): NftMonitorLine | undefined {
  const text = line.trim();
  if (text === '') return undefined;
  const generation = GENERATION.exec(text);
  if (generation !== null)
    return { kind: 'generation', pid: generation[1] === undefined ? undefined : Number(generation[1]) };
  if (/^(add|delete|destroy|replace|update|reset|flush) /.test(text))
    return { kind: 'object', ours: OUR_OBJECT.test(text) };
  return { kind: 'object', ours: true };
}

/**
 * Puts the lines of `nft monitor` together into transactions: each ends with its
 * generation line, which names the process that committed it. A transaction that touched
 * the agent's table is reported once, with whether one of the agent's own writes made it
 * (`isOwn(pid)`); others are reported as not ours.
 */
export class NftTransactions {
  private touched = false;
  private readonly isOwn: (pid: number) => boolean;
  private readonly report: (touchedOurs: boolean, own: boolean) => void;

  constructor(isOwn: (pid: number) => boolean, report: (touchedOurs: boolean, own: boolean) => void) {
    this.isOwn = isOwn;
    this.report = report;
  }

  line(text: string): void {
    const parsed = parseNftMonitorLine(text);
    if (parsed === undefined) return;
    if (parsed.kind === 'object') {
      this.touched ||= parsed.ours;
      return;
    }
    const touched = this.touched;
    this.touched = false;
    this.report(touched, touched && parsed.pid !== undefined && this.isOwn(parsed.pid));
  }
}
