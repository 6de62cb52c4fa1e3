// Certificates the lab's cluster parts present to each other, issued by the test API
// server's CA (apiserver.ts): a kubelet's client certificate (system:node:NAME in
// system:nodes, which the Node authorizer and NodeRestriction judge), its serving
// certificate (the API server checks it when it calls the kubelet for logs and exec), the
// controller-manager's and scheduler's client certificates; and that CA itself with the
// API server's serving certificate. Node's crypto cannot issue X.509 certificates, hence openssl.

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertificateRequest {
  /** The subject's CN: the user name the API server sees. */
  commonName: string;
  /** The subject's O entries: the groups the API server sees. */
  organizations?: string[];
  /** clientAuth, serverAuth or both. */
  usage: Array<'client' | 'server'>;
  /** Subject alternative names of a serving certificate. */
  ips?: string[];
  dnsNames?: string[];
}

export interface IssuedCertificate {
  cert: string;
  key: string;
}

const NAME = /^[A-Za-z0-9._-]+$/;
/** A new P-256 key, unencrypted. */
const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
/** What a CN or O may hold here: node names, system: user names, group names. */
const SUBJECT = /^[A-Za-z0-9:._-]+$/;

/** Issues a certificate (P-256 key, 3 days) signed by the CA into dir/NAME.crt and dir/NAME.key (0600). */
export function issueCertificate(
  dir: string,
  name: string,
  ca: { cert: string; key: string },
  request: CertificateRequest,
): IssuedCertificate {
  if (!NAME.test(name)) throw new Error(`issueCertificate: "${name}" is not a file-name-safe name`);
  for (const part of [request.commonName, ...(request.organizations ?? [])])
    if (!SUBJECT.test(part)) throw new Error(`issueCertificate: "${part}" is not a subject name this harness issues`);
  mkdirSync(dir, { recursive: true });
  const p = (suffix: string) => join(dir, `${name}${suffix}`);
  const usages = request.usage.map((u) => (u === 'client' ? 'clientAuth' : 'serverAuth'));
  const alt = [
    ...(request.ips ?? []).map((ip, i) => `IP.${i + 1} = ${ip}`),
    ...(request.dnsNames ?? []).map((dns, i) => `DNS.${i + 1} = ${dns}`),
  ];
  writeConfig(p('.cnf'), [
    '[cert]',
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage = ${usages.join(',')}`,
    'authorityKeyIdentifier = keyid',
    ...(alt.length > 0 ? ['subjectAltName = @alt', '[alt]', ...alt] : []),
  ]);
  const subject = `/${[...(request.organizations ?? []).map((o) => `O=${o}`), `CN=${request.commonName}`].join('/')}`;
  openssl(['req', '-new', ...P256, '-config', p('.cnf'), '-subj', subject, '-keyout', p('.key'), '-out', p('.csr')]);
  openssl([
    'x509',
    '-req',
    '-in',
    p('.csr'),
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-CAserial',
    join(dir, 'ca.srl'),
    '-days',
    '3',
    '-extfile',
    p('.cnf'),
    '-extensions',
    'cert',
    '-out',
    p('.crt'),
  ]);
  return { cert: p('.crt'), key: p('.key') };
}

/** A self-signed CA (P-256, 3 days) in dir/NAME.crt and dir/NAME.key. */
export function createCertificateAuthority(dir: string, name: string, commonName: string): IssuedCertificate {
  if (!NAME.test(name)) throw new Error(`createCertificateAuthority: "${name}" is not a file-name-safe name`);
  if (!SUBJECT.test(commonName)) throw new Error(`createCertificateAuthority: "${commonName}" is not a subject name`);
  mkdirSync(dir, { recursive: true });
  const p = (suffix: string) => join(dir, `${name}${suffix}`);
  writeConfig(p('.cnf'), [
    '[ca]',
    'basicConstraints = critical,CA:TRUE',
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
  ]);
  openssl([
    'req',
    '-x509',
    '-new',
    ...P256,
    '-config',
    p('.cnf'),
    '-extensions',
    'ca',
    '-days',
    '3',
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    p('.key'),
    '-out',
    p('.crt'),
  ]);
  return { cert: p('.crt'), key: p('.key') };
}

/** An openssl config of our own (the subject comes from -subj), so the system's openssl.cnf defaults add no extensions. */
function writeConfig(path: string, extensions: string[]): void {
  writeFileSync(
    path,
    ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'CN = unused', ...extensions, ''].join('\n'),
  );
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error)
    throw new Error(`openssl is needed to issue the lab's certificates (apt-get install openssl): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

/** A kubeconfig (as text) that authenticates with a client certificate, read from files. */
export function certKubeconfigYaml(server: string, caFile: string, cert: IssuedCertificate, user: string): string {
  // JSON is YAML.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'lab', cluster: { server, 'certificate-authority': caFile } }],
      users: [{ name: user, user: { 'client-certificate': cert.cert, 'client-key': cert.key } }],
      contexts: [{ name: 'lab', context: { cluster: 'lab', user } }],
      'current-context': 'lab',
    },
    null,
    2,
  );
}
