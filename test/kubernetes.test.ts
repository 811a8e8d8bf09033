import { execFile } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Service } from 'kubernetes-models/v1'
import { loadConfig } from '../src/config/index.js'
import { EnvSchema } from '../src/config/schema.js'

/**
 * deploy/kubernetes/, as `kubectl apply -k` would send it: every object valid against the
 * Kubernetes API schemas (kubernetes-models), and the deployment keeps the rules of
 * docs/operating.md#kubernetes.
 */

const DIR = new URL('../deploy/kubernetes/', import.meta.url)
const MODELS: Record<string, new (data: any) => { validate (): void }> = {
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service
}

interface K8sObject { apiVersion: string, kind: string, metadata: { name: string, labels?: Record<string, string> }, spec?: any, data?: Record<string, string> }

async function parseYaml (file: string): Promise<unknown[]> {
  const docs = parseAllDocuments(await readFile(new URL(file, DIR), 'utf8'))
  if (!Array.isArray(docs)) return []
  return docs.map(doc => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message ?? 'invalid YAML'}`)
    return doc.toJS() as unknown
  }).filter(doc => doc !== null)
}

/** What kustomize renders from a kustomization that only lists resources (the test keeps it so). */
async function render (): Promise<{ kustomization: Record<string, unknown>, objects: K8sObject[] }> {
  const [kustomization] = await parseYaml('kustomization.yaml') as Array<Record<string, unknown>>
  if (kustomization === undefined) throw new Error('kustomization.yaml is empty')
  const objects: K8sObject[] = []
  for (const file of kustomization.resources as string[]) objects.push(...await parseYaml(file) as K8sObject[])
  return { kustomization, objects }
}

const { kustomization, objects } = await render()
const find = (kind: string, name: string) => {
  const found = objects.find(o => o.kind === kind && o.metadata.name === name)
  if (found === undefined) throw new Error(`no ${kind} ${name}`)
  return found
}
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v)

t.test('the kustomization lists every manifest, and only resources', async t => {
  t.same(Object.keys(kustomization).sort(), ['apiVersion', 'kind', 'resources'], 'nothing the test\'s rendering would ignore')
  const files = (await readdir(DIR)).filter(file => file.endsWith('.yaml') && file !== 'kustomization.yaml').sort()
  t.same([...kustomization.resources as string[]].sort(), files)
})

t.test('every object is valid against the Kubernetes schemas', async t => {
  t.ok(objects.length >= 9)
  for (const object of objects) {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`]
    if (Model === undefined) {
      t.fail(`${object.apiVersion} ${object.kind} ${object.metadata.name}: no schema here`)
      continue
    }
    t.doesNotThrow(() => new Model(object).validate(), `${object.kind} ${object.metadata.name}`)
  }
})

t.test('the schemas catch a mistake', async t => {
  const deployment = structuredClone(find('Deployment', 'mangopay-token-broker'))
  deployment.spec.replicas = 'two'
  t.throws(() => new Deployment(deployment).validate())
})

t.test('two hardened broker replicas with probes, resources and the API key from a Secret file', async t => {
  const deployment = find('Deployment', 'mangopay-token-broker')
  t.equal(deployment.spec.replicas, 2)
  const pod = deployment.spec.template.spec
  t.ok(matches(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels), 'the selector picks its pods')
  t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000 })
  t.equal(pod.automountServiceAccountToken, false)
  const [broker] = pod.containers
  t.match(broker.securityContext, { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] } })
  t.match(broker.readinessProbe.httpGet, { path: '/readyz', port: 'http' })
  t.match(broker.livenessProbe.httpGet, { path: '/healthz', port: 'http' })
  t.match(broker.ports, [{ name: 'http', containerPort: 3000 }, { name: 'metrics', containerPort: 9464 }])
  t.ok(broker.resources.requests.cpu !== undefined && broker.resources.requests.memory !== undefined && broker.resources.limits.memory !== undefined)

  const keyFile = broker.env.find((e: { name: string }) => e.name === 'MANGOPAY_API_KEY_FILE')?.value as string
  t.notOk(broker.env.some((e: { name: string }) => e.name === 'MANGOPAY_API_KEY'), 'never the key itself')
  const mount = broker.volumeMounts.find((m: { mountPath: string }) => keyFile.startsWith(`${m.mountPath}/`))
  t.equal(mount?.readOnly, true, 'the key file is on a read-only mount')
  const volume = pod.volumes.find((v: { name: string }) => v.name === mount?.name)
  t.equal(volume?.secret?.secretName, 'mangopay-token-broker', 'of the Secret')
  t.same(volume?.secret?.items, [{ key: 'mangopay-api-key', path: keyFile.slice(mount.mountPath.length + 1) }])
  t.equal(volume.secret.defaultMode & 0o7, 0, 'unreadable by others')

  const settings = find('ConfigMap', broker.envFrom[0].configMapRef.name).data ?? {}
  const known = Object.keys(EnvSchema.properties)
  t.same(Object.keys(settings).filter(name => !known.includes(name)), [], 'the ConfigMap sets only variables the broker reads')
  t.equal(settings.METRICS_PORT, '9464')
  t.equal(settings.PORT, String(broker.ports[0].containerPort))
  t.notOk('MANGOPAY_API_KEY' in settings)
  // The broker's own checks (a clear-text REDIS_URL, dev mode in production…) accept these settings.
  t.doesNotThrow(() => loadConfig({ ...settings, NODE_ENV: 'production', MANGOPAY_API_KEY: 'k'.repeat(32) }), 'the broker starts with them')
})

t.test('a Service, a PodDisruptionBudget and an autoscaler for the broker', async t => {
  const podLabels = find('Deployment', 'mangopay-token-broker').spec.template.metadata.labels
  const service = find('Service', 'mangopay-token-broker')
  t.ok(matches(service.spec.selector, podLabels))
  t.match(service.spec.ports, [{ name: 'http', targetPort: 'http' }])
  const pdb = find('PodDisruptionBudget', 'mangopay-token-broker')
  t.ok(matches(pdb.spec.selector.matchLabels, podLabels))
  t.equal(pdb.spec.minAvailable, 1, 'one of the two replicas stays through a drain')
  const hpa = find('HorizontalPodAutoscaler', 'mangopay-token-broker')
  t.match(hpa.spec.scaleTargetRef, { kind: 'Deployment', name: 'mangopay-token-broker' })
  t.equal(hpa.spec.minReplicas, 2)
  t.ok(hpa.spec.maxReplicas > 2)
})

t.test('the metrics port is open to the monitoring namespace only', async t => {
  const podLabels = find('Deployment', 'mangopay-token-broker').spec.template.metadata.labels
  const policy = find('NetworkPolicy', 'mangopay-token-broker')
  t.ok(matches(policy.spec.podSelector.matchLabels, podLabels))
  t.same(policy.spec.policyTypes, ['Ingress'])
  const rules = policy.spec.ingress as Array<{ from?: unknown[], ports?: Array<{ port: number | string }> }>
  const metricsRules = rules.filter(rule => rule.ports === undefined || rule.ports.some(p => p.port === 9464 || p.port === 'metrics'))
  t.same(metricsRules, [{
    from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
    ports: [{ port: 9464, protocol: 'TCP' }]
  }], 'one rule names port 9464, from the monitoring namespace alone; no rule opens every port')
})

t.test('Redis for shared state, reachable from the broker only', async t => {
  const settings = find('ConfigMap', 'mangopay-token-broker').data ?? {}
  const url = new URL(settings.REDIS_URL ?? '')
  const service = find('Service', url.hostname)
  t.equal(String(service.spec.ports[0].port), url.port)
  const redis = objects.find(o => o.kind === 'Deployment' && matches(service.spec.selector, o.spec.template.metadata.labels))
  t.ok(redis, 'a Deployment behind the Service')
  t.match(redis?.spec.template.spec.containers[0].securityContext, { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false })
  const policy = objects.find(o => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels, redis?.spec.template.metadata.labels))
  const brokerLabels = find('Deployment', 'mangopay-token-broker').spec.template.metadata.labels
  t.same(policy?.spec.ingress.map((rule: { from: unknown[] }) => rule.from), [[{ podSelector: { matchLabels: brokerLabels } }]])
})

const kustomized = await promisify(execFile)('kubectl', ['kustomize', new URL('.', DIR).pathname], { maxBuffer: 8 * 1024 * 1024 }).catch(() => undefined)

t.test('kustomize renders the same objects', { skip: kustomized === undefined ? 'no kubectl on this machine' : false }, async t => {
  const rendered = parseAllDocuments(kustomized?.stdout ?? '')
  const names = (Array.isArray(rendered) ? rendered.map(doc => doc.toJS() as K8sObject) : []).map(o => `${o.kind}/${o.metadata.name}`).sort()
  t.same(names, objects.map(o => `${o.kind}/${o.metadata.name}`).sort())
})
