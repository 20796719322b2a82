/**
 * Renders deploy/k8s the way `kubectl apply -k` would: with `kubectl kustomize` where kubectl is
 * installed, else from the files the kustomization lists, applying the few transformations our
 * overlays use (namespace, images, configMapGenerator merge, secretGenerator literals, strategic
 * merge patches keyed by name). Where both exist the suite checks that they agree, so the
 * fallback a machine without kubectl relies on stays honest.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
} & Record<string, unknown>;

interface Kustomization {
  resources?: string[];
  namespace?: string;
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
  configMapGenerator?: Array<{ name: string; behavior?: 'create' | 'merge'; envs?: string[]; literals?: string[] }>;
  secretGenerator?: Array<{ name: string; literals?: string[] }>;
  patches?: Array<{ path: string }>;
}

/**
 * YAML as Kubernetes reads it: 1.1, so `defaultMode: 0440` is the octal it means (YAML 1.2 would
 * read the decimal 440).
 */
export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((document) => {
      if (document.errors.length > 0) throw new Error(document.errors.map((e) => e.message).join('; '));
      return document.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null);
}

export function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;
}

/** `kubectl kustomize <dir>`: what a cluster would be sent. */
export function kubectlKustomize(dir: string): K8sObject[] {
  const result = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  const objects = parseManifests(result.stdout);
  // kubectl wraps long base64 values over lines; the API server's decoder skips the line breaks.
  for (const secret of objects.filter((o) => o.kind === 'Secret')) {
    const data = (secret.data ?? {}) as Record<string, string>;
    for (const key of Object.keys(data)) data[key] = data[key].replace(/\s+/g, '');
  }
  return objects;
}

/** The same from the files the kustomization lists, without kubectl. */
export function renderFromFiles(dir: string): K8sObject[] {
  const kustomization = parseManifests(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0] as unknown as Kustomization;
  let objects: K8sObject[] = [];
  for (const resource of kustomization.resources ?? []) {
    const path = join(dir, resource);
    objects.push(...(statSync(path).isDirectory() ? renderFromFiles(path) : parseManifests(readFileSync(path, 'utf8'))));
  }
  for (const generator of kustomization.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const file of generator.envs ?? []) Object.assign(data, parseEnvFile(readFileSync(join(dir, file), 'utf8')));
    Object.assign(data, parseLiterals(generator.literals ?? []));
    const existing = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === generator.name);
    if (generator.behavior === 'merge') {
      if (!existing) throw new Error(`configMapGenerator ${generator.name}: merge without a ConfigMap to merge into`);
      existing.data = { ...(existing.data as Record<string, string>), ...data };
    } else {
      objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data });
    }
  }
  for (const generator of kustomization.secretGenerator ?? []) {
    const data = Object.fromEntries(Object.entries(parseLiterals(generator.literals ?? [])).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
    objects.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: generator.name }, type: 'Opaque', data });
  }
  for (const patch of kustomization.patches ?? []) {
    for (const change of parseManifests(readFileSync(join(dir, patch.path), 'utf8'))) {
      const target = objects.find((o) => o.kind === change.kind && o.metadata.name === change.metadata.name);
      if (!target) throw new Error(`patch ${patch.path}: no ${change.kind} ${change.metadata.name} to patch`);
      objects = objects.map((o) => (o === target ? (strategicMerge(o, change) as K8sObject) : o));
    }
  }
  for (const image of kustomization.images ?? []) {
    for (const container of containersOf(objects)) {
      const [name, tag] = splitImage(container.image);
      if (name !== image.name) continue;
      container.image = `${image.newName ?? name}:${image.newTag ?? tag}`;
    }
  }
  if (kustomization.namespace) for (const object of objects) object.metadata.namespace = kustomization.namespace;
  return objects;
}

/**
 * Strategic merge as the patches here need it: maps merge, lists of named items (containers,
 * env, volumes, ports) merge by name with the patch's items first (as kustomize orders them),
 * other lists are replaced.
 */
function strategicMerge(base: unknown, patch: unknown): unknown {
  if (Array.isArray(base) && Array.isArray(patch)) {
    const named = (list: unknown[]): boolean => list.every((item) => typeof item === 'object' && item !== null && typeof (item as { name?: unknown }).name === 'string');
    if (!named(base) || !named(patch) || patch.length === 0) return patch;
    const byName = (list: unknown[], name: string): unknown => list.find((item) => (item as { name: string }).name === name);
    const merged = patch.map((item) => {
      const existing = byName(base, (item as { name: string }).name);
      return existing === undefined ? item : strategicMerge(existing, item);
    });
    return [...merged, ...base.filter((item) => byName(patch, (item as { name: string }).name) === undefined)];
  }
  if (isRecord(base) && isRecord(patch)) {
    const result: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(patch)) result[key] = key in base ? strategicMerge(base[key], value) : value;
    return result;
  }
  return patch;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseEnvFile(text: string): Record<string, string> {
  return parseLiterals(text.split('\n').filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#')));
}

function parseLiterals(literals: string[]): Record<string, string> {
  return Object.fromEntries(literals.map((literal) => [literal.slice(0, literal.indexOf('=')), literal.slice(literal.indexOf('=') + 1)]));
}

function splitImage(image: string): [string, string] {
  const colon = image.lastIndexOf(':');
  return colon > image.lastIndexOf('/') ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest'];
}

export interface Container {
  name: string;
  image: string;
  env?: Array<{ name: string; value?: string }>;
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  [key: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  volumes?: Array<{ name: string; secret?: { secretName: string; defaultMode?: number }; emptyDir?: Record<string, unknown> }>;
  [key: string]: unknown;
}

/** The pod template of a Deployment. */
export function podSpecOf(deployment: K8sObject): PodSpec {
  return (deployment.spec as { template: { spec: PodSpec } }).template.spec;
}

function containersOf(objects: K8sObject[]): Container[] {
  return objects.filter((o) => o.kind === 'Deployment').flatMap((o) => podSpecOf(o).containers);
}

/** Objects sorted and with kustomize's generated-name hashes removed, for comparing two renderings. */
export function normalised(objects: K8sObject[]): unknown[] {
  const text = JSON.stringify(objects, (_key, value: unknown) => {
    if (Array.isArray(value) && value.every((item) => isRecord(item) && typeof item.name === 'string')) {
      return [...(value as Array<{ name: string }>)].sort((a, b) => a.name.localeCompare(b.name));
    }
    return value;
  }).replace(/(token-broker-[a-z]+)-[a-z0-9]{10}"/g, '$1"');
  return (JSON.parse(text) as K8sObject[]).sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
}

export function one(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0];
}

export interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Every alerting rule of the PrometheusRule among `objects`. */
export function alertRules(objects: K8sObject[]): AlertRule[] {
  const spec = one(objects, 'PrometheusRule').spec as { groups: Array<{ rules: AlertRule[] }> };
  return spec.groups.flatMap((group) => group.rules);
}

export const K8S_ROOT = join(dirname(dirname(__dirname)), 'deploy/k8s');
