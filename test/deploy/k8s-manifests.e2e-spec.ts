/**
 * deploy/k8s as a cluster would receive it: the base and the example overlay rendered (kubectl
 * kustomize where installed, else the files their kustomizations list), every object valid
 * against the Kubernetes and Prometheus Operator schemas, and the promises DESIGN makes about the
 * deployment kept: probes on the health routes, a grace period longer than the drain and its
 * timeout, non-root on a read-only root filesystem, no service-account token, requests and
 * limits, secrets only as files, selectors and ports that meet, and a configuration the broker
 * accepts in production.
 */
import { loadConfig, SECRET_VARIABLES } from '@app/config';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alertRules, K8S_ROOT, K8sObject, kubectlAvailable, kubectlKustomize, normalised, one, podSpecOf, renderFromFiles } from './kustomize';

/** The schema of each kind the manifests may hold. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

const BASE = join(K8S_ROOT, 'base');
const OVERLAY = join(K8S_ROOT, 'overlays/example');
const KUBECTL = kubectlAvailable();
const render = (dir: string): K8sObject[] => (KUBECTL ? kubectlKustomize(dir) : renderFromFiles(dir));

/** Schema problems of every object, as `Kind/name: message` (empty when all are valid). */
function schemaProblems(objects: K8sObject[]): string[] {
  return objects.flatMap((object) => {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    if (!Model) return [`${object.kind}/${object.metadata.name}: ${object.apiVersion} ${object.kind} is not a kind these manifests are checked for`];
    try {
      new Model(object as never).validate();
      return [];
    } catch (error) {
      return [`${object.kind}/${object.metadata.name}: ${(error as Error).message}`];
    }
  });
}

describe('deploy/k8s', () => {
  const base = render(BASE);
  const overlay = render(OVERLAY);
  const deployment = one(base, 'Deployment');
  const pod = podSpecOf(deployment);
  const container = pod.containers[0];
  const podLabels = (deployment.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
  const selects = (selector: { matchLabels?: Record<string, string> } | undefined): boolean =>
    selector?.matchLabels !== undefined && Object.entries(selector.matchLabels).every(([k, v]) => podLabels[k] === v);

  it(`renders (${KUBECTL ? 'kubectl kustomize' : 'the files each kustomization lists'}) into objects valid against their schemas`, () => {
    expect(base.map((o) => o.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'PrometheusRule', 'Service', 'ServiceAccount', 'ServiceMonitor'].sort(),
    );
    expect(schemaProblems(base)).toEqual([]);
    expect(schemaProblems(overlay)).toEqual([]);
    // The check has teeth: a wrong type, a missing field and an unknown kind are each caught.
    const broken: K8sObject[] = JSON.parse(JSON.stringify(base)) as K8sObject[];
    (one(broken, 'Deployment').spec as { replicas: unknown }).replicas = 'two';
    delete (one(broken, 'Service').spec as { ports: Array<{ port?: number }> }).ports[0].port;
    broken.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'stray' } });
    expect(schemaProblems(broken).sort()).toEqual([
      'Deployment/token-broker: data/spec/replicas must be integer',
      'Pod/stray: v1 Pod is not a kind these manifests are checked for',
      'Service/token-broker: data/spec/ports/0 must have required property port',
    ]);
  });

  (KUBECTL ? it : it.skip)('renders the same from the listed files as kubectl kustomize does (the fallback for machines without kubectl)', () => {
    expect(normalised(renderFromFiles(BASE))).toEqual(normalised(kubectlKustomize(BASE)));
    expect(normalised(renderFromFiles(OVERLAY))).toEqual(normalised(kubectlKustomize(OVERLAY)));
  });

  it('runs two or more replicas with startup, readiness and liveness probes on the health routes', () => {
    expect((deployment.spec as { replicas: number }).replicas).toBeGreaterThanOrEqual(2);
    const port = container.ports?.find((p) => p.name === 'http');
    expect(port?.containerPort).toBe(Number(configMapData(base).PORT));
    const probe = (name: string): { httpGet: { path: string; port: string } } => container[name] as { httpGet: { path: string; port: string } };
    expect(probe('startupProbe').httpGet).toEqual({ path: '/health/live', port: 'http' });
    expect(probe('readinessProbe').httpGet).toEqual({ path: '/health/ready', port: 'http' });
    expect(probe('livenessProbe').httpGet).toEqual({ path: '/health/live', port: 'http' });
  });

  it('gives the shutdown longer than the drain plus its timeout, and leaves the signal to the broker', () => {
    const data = configMapData(base);
    const graceMs = (pod.terminationGracePeriodSeconds as number) * 1000;
    expect(graceMs).toBeGreaterThan(Number(data.SHUTDOWN_DRAIN_MS) + Number(data.SHUTDOWN_TIMEOUT_MS));
    // No preStop hook or command wrapper: the broker drains on SIGTERM itself, as PID 1.
    expect(container.lifecycle).toBeUndefined();
    expect(container.command).toBeUndefined();
  });

  it('agrees with the Dockerfile and docker-compose.yml: the user, the port, the signal and node as PID 1, the grace period', () => {
    const dockerfile = readFileSync(join(K8S_ROOT, '../../Dockerfile'), 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const data = configMapData(base);
    expect(/^USER (\d+):(\d+)$/m.exec(runtime)?.slice(1).map(Number)).toEqual([(pod.securityContext as { runAsUser: number }).runAsUser, (pod.securityContext as { runAsGroup: number }).runAsGroup]);
    expect(/^EXPOSE (\d+)$/m.exec(runtime)?.[1]).toBe(data.PORT);
    expect(/^STOPSIGNAL (\S+)$/m.exec(runtime)?.[1]).toBe('SIGTERM');
    // Exec form, node first: no shell between the signal and the broker.
    expect(JSON.parse(/^CMD (\[.*\])$/m.exec(runtime)?.[1] ?? '[]')[0]).toBe('node');
    const compose = readFileSync(join(K8S_ROOT, '../../docker-compose.yml'), 'utf8');
    const composeGraceSec = Number(/stop_grace_period: (\d+)s/.exec(compose)?.[1]);
    expect(composeGraceSec * 1000).toBeGreaterThan(Number(data.SHUTDOWN_DRAIN_MS) + Number(data.SHUTDOWN_TIMEOUT_MS));
  });

  it('runs as non-root on a read-only root filesystem without a service-account token; what must write gets an emptyDir', () => {
    const podSecurity = pod.securityContext as Record<string, unknown>;
    const security = container.securityContext as Record<string, unknown>;
    expect(podSecurity.runAsNonRoot).toBe(true);
    expect(podSecurity.runAsUser).not.toBe(0);
    expect(security).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(one(base, 'ServiceAccount').automountServiceAccountToken).toBe(false);
    for (const mount of container.volumeMounts ?? []) {
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      expect({ mount: mount.name, writable: mount.readOnly !== true, emptyDir: volume?.emptyDir !== undefined, secret: volume?.secret !== undefined }).toEqual(
        mount.readOnly === true ? { mount: mount.name, writable: false, emptyDir: false, secret: true } : { mount: mount.name, writable: true, emptyDir: true, secret: false },
      );
    }
  });

  it('requests and limits CPU and memory, the memory limit above the measured 200 MB ceiling', () => {
    const resources = container.resources as { requests: Record<string, string>; limits: Record<string, string> };
    expect(Object.keys(resources.requests).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(resources.limits).sort()).toEqual(['cpu', 'memory']);
    expect(mebibytes(resources.limits.memory)).toBeGreaterThan(200);
    expect(mebibytes(resources.requests.memory)).toBeLessThanOrEqual(mebibytes(resources.limits.memory));
    // The V8 heap is capped below the limit.
    const heap = /--max-old-space-size=(\d+)/.exec(container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '');
    expect(Number(heap?.[1])).toBeLessThan(mebibytes(resources.limits.memory));
  });

  it('reads every secret from the mounted Secret through <NAME>_FILE, never as a value', () => {
    for (const objects of [base, overlay]) {
      const deploymentHere = one(objects, 'Deployment');
      const podHere = podSpecOf(deploymentHere);
      const env = podHere.containers[0].env ?? [];
      const secretVolume = podHere.volumes?.find((v) => v.secret !== undefined);
      const mount = podHere.containers[0].volumeMounts?.find((m) => m.name === secretVolume?.name);
      expect(secretVolume?.secret?.defaultMode).toBe(0o440);
      expect(mount?.readOnly).toBe(true);
      // No secret as a plain variable, in the pod spec or the ConfigMap.
      const plain = [...env.map((e) => e.name), ...Object.keys(configMapData(objects))].filter((name) => SECRET_VARIABLES.includes(name));
      expect(plain).toEqual([]);
      const files = env.filter((e) => e.name.endsWith('_FILE'));
      expect(files.map((e) => e.name.replace(/_FILE$/, '')).filter((name) => !SECRET_VARIABLES.includes(name))).toEqual([]);
      for (const file of files) expect(file.value?.startsWith(`${mount?.mountPath}/`)).toBe(true);
    }
    expect(
      (container.env ?? [])
        .map((e) => e.name)
        .filter((n) => n.endsWith('_FILE'))
        .sort(),
    ).toEqual(['ADMIN_API_KEYS_FILE', 'DATABASE_URL_FILE', 'SERVICE_API_KEYS_FILE', 'TOKEN_ENCRYPTION_KEYS_FILE']);
    // The example Secret holds a key for every file the example Deployment names.
    const secret = one(overlay, 'Secret');
    const mountPath = podSpecOf(one(overlay, 'Deployment')).containers[0].volumeMounts?.find((m) => m.readOnly === true)?.mountPath ?? '';
    const named = (podSpecOf(one(overlay, 'Deployment')).containers[0].env ?? []).filter((e) => e.name.endsWith('_FILE')).map((e) => (e.value ?? '').slice(mountPath.length + 1));
    expect(Object.keys(secret.data as Record<string, string>).sort()).toEqual(named.sort());
  });

  it('points the Service, PodDisruptionBudget, autoscaler, NetworkPolicy and ServiceMonitor at the broker pods and port', () => {
    const service = one(base, 'Service').spec as { selector: Record<string, string>; ports: Array<{ name: string; targetPort: string }> };
    expect(selects({ matchLabels: service.selector })).toBe(true);
    expect(service.ports.map((p) => p.targetPort)).toEqual(['http']);
    expect(selects((one(base, 'PodDisruptionBudget').spec as { selector: { matchLabels: Record<string, string> } }).selector)).toBe(true);
    const hpa = one(base, 'HorizontalPodAutoscaler').spec as { scaleTargetRef: { kind: string; name: string }; minReplicas: number };
    expect(hpa.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa.minReplicas).toBeGreaterThanOrEqual(2);
    const policy = one(base, 'NetworkPolicy').spec as { podSelector: { matchLabels: Record<string, string> }; ingress: Array<{ ports: Array<{ port: string }> }>; egress: Array<{ ports: Array<{ port: number; protocol: string }> }> };
    expect(selects(policy.podSelector)).toBe(true);
    expect(policy.ingress.flatMap((rule) => rule.ports.map((p) => p.port))).toEqual(['http']);
    expect(policy.egress.flatMap((rule) => rule.ports.map((p) => `${p.protocol}/${p.port}`)).sort()).toEqual(['TCP/443', 'TCP/53', 'TCP/5432', 'UDP/53']);
    const monitor = one(base, 'ServiceMonitor').spec as { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> };
    expect(Object.entries(monitor.selector.matchLabels).every(([k, v]) => one(base, 'Service').metadata.labels?.[k] === v)).toBe(true);
    expect(monitor.endpoints).toEqual([expect.objectContaining({ port: service.ports[0].name, path: '/metrics' })]);
  });

  it('has alert rules that parse as PromQL and say how bad and what to do', () => {
    const rules = alertRules(base);
    expect(rules.map((r) => r.alert).sort()).toEqual([
      'TokenBrokerConnectionsNeedReauth',
      'TokenBrokerProviderMisconfigured',
      'TokenBrokerReadinessFlapping',
      'TokenBrokerRefreshFailing',
      'TokenBrokerWebhookBacklog',
      'TokenBrokerWebhookDeliveriesFailing',
    ]);
    for (const rule of rules) {
      const errors: string[] = [];
      promqlParser.parse(rule.expr).iterate({ enter: (node) => void (node.type.isError && errors.push(`${rule.alert} at ${node.from}`)) });
      expect(errors).toEqual([]);
      expect(['warning', 'critical']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary).toEqual(expect.any(String));
      expect(rule.annotations?.description).toEqual(expect.any(String));
    }
  });

  it('configures the example installation in a way the broker accepts in production', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tb-k8s-config-'));
    try {
      const env: NodeJS.ProcessEnv = { ...configMapData(overlay) };
      const overlayContainer = podSpecOf(one(overlay, 'Deployment')).containers[0];
      // The Secret's values are placeholders: stand-ins of the right form play them, one file each.
      const grants = env.SERVICE_GRANTS ?? '';
      const services = [...new Set(grants.split(',').map((g) => g.split('=')[0]).filter((s) => s !== '*'))];
      const standIns: Record<string, string> = {
        DATABASE_URL: 'postgres://token_broker:x@postgres.example.internal:5432/token_broker',
        TOKEN_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        SERVICE_API_KEYS: (services.length > 0 ? services : ['svc']).map((s) => `${s}:${randomBytes(24).toString('base64url')}`).join(','),
        ADMIN_API_KEYS: `ops:${randomBytes(24).toString('base64url')}`,
        WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
      };
      for (const variable of overlayContainer.env ?? []) {
        if (!variable.name.endsWith('_FILE')) {
          env[variable.name] = variable.value;
          continue;
        }
        const name = variable.name.replace(/_FILE$/, '');
        const path = join(dir, name);
        writeFileSync(path, `${standIns[name] ?? randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
        env[variable.name] = path;
      }
      env.DATA_DIR = join(dir, 'data');
      const { config, notices } = loadConfig(env);
      expect(config.isProduction).toBe(true);
      expect(Object.keys(config.providers).sort()).toEqual(['copernica', 'copper']);
      expect(notices).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function configMapData(objects: K8sObject[]): Record<string, string> {
  return one(objects, 'ConfigMap').data as Record<string, string>;
}

function mebibytes(quantity: string): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
  if (!match) throw new Error(`unexpected memory quantity ${quantity}`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}
