/**
 * The registry is the one place a provider is named. These specs hold it to that: the registry
 * is consistent with itself, and no broker source outside definitions/ spells a provider id,
 * so adding a provider cannot need an edit there. (That the sandbox plays every provider is
 * checked beside the sandbox, in apps/provider-sandbox/src/providers/registry-coverage.spec.ts.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import {
  isProviderId,
  PROVIDER_DEFINITIONS,
  PROVIDER_IDS,
  providerDefinition,
  unknownProviderError,
  unknownProviderMessage,
} from './provider-registry';

const ROOT = resolve(__dirname, '../../..');

/** Broker code: the broker app and every library, not the provider definitions themselves, not specs. */
const SCANNED_ROOTS = ['apps/token-broker/src', ...readdirSync(join(ROOT, 'libs')).map((lib) => `libs/${lib}/src`)];
const EXEMPT_DIRECTORY = 'libs/providers/src/definitions/';
const SPEC_FILE = /[.-]spec\.ts$/;

interface ProviderMention {
  where: string;
  text: string;
}

/**
 * Where `source` spells a provider id: inside a string or template literal (as the whole value
 * or as a word of it, like a hand-written "known: ..." list) or as a property name (`.id`,
 * `{ id: ... }`). Read from the syntax tree, so comments never count, nor do module paths.
 */
function providerMentions(fileName: string, source: string, ids: ReadonlyArray<string>): ProviderMention[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const words = new RegExp(`\\b(${ids.join('|')})\\b`);
  const mentions: ProviderMention[] = [];
  const mention = (node: ts.Node): void => {
    const { line } = file.getLineAndCharacterOfPosition(node.getStart(file));
    mentions.push({ where: `${fileName}:${line + 1}`, text: node.getText(file).slice(0, 120) });
  };
  const visit = (node: ts.Node): void => {
    if (isModuleSpecifier(node)) return;
    if (ts.isStringLiteralLike(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) {
      if (words.test(node.text)) mention(node);
    } else if (ts.isIdentifier(node) && ids.includes(node.text) && isPropertyName(node)) {
      mention(node);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return mentions;
}

/** `from './definitions/<id>.provider'`: how the registry lists the definitions, not a provider named in code. */
function isModuleSpecifier(node: ts.Node): boolean {
  const parent = node.parent as ts.Node | undefined;
  return parent !== undefined && (ts.isImportDeclaration(parent) || ts.isExportDeclaration(parent)) && parent.moduleSpecifier === node;
}

function isPropertyName(node: ts.Identifier): boolean {
  const parent = node.parent;
  return (
    (ts.isPropertyAccessExpression(parent) && parent.name === node) ||
    ((ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent) || ts.isPropertySignature(parent)) && parent.name === node) ||
    ts.isShorthandPropertyAssignment(parent)
  );
}

function sourceFiles(directory: string): string[] {
  let entries;
  try {
    entries = readdirSync(join(ROOT, directory), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = `${directory}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !SPEC_FILE.test(entry.name) ? [path] : [];
  });
}

describe('the provider registry', () => {
  it('lists each provider once, with an id and an environment prefix fit for URLs, cookies and variables', () => {
    const ids = PROVIDER_DEFINITIONS.map((d) => d.id);
    const prefixes = PROVIDER_DEFINITIONS.map((d) => d.envPrefix);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    for (const definition of PROVIDER_DEFINITIONS) {
      expect(definition.id).toMatch(/^[a-z][a-z0-9]{0,31}$/);
      expect(definition.envPrefix).toMatch(/^[A-Z][A-Z0-9]*$/);
    }
    expect(PROVIDER_IDS).toEqual(ids);
  });

  it('finds every definition by its id and knows nothing else', () => {
    for (const id of PROVIDER_IDS) {
      expect(isProviderId(id)).toBe(true);
      expect(providerDefinition(id).id).toBe(id);
      expect(isProviderId(id.toUpperCase())).toBe(false);
      expect(isProviderId(`${id} `)).toBe(false);
    }
    for (const other of ['', 'dropbox', undefined, null, 42, {}]) expect(isProviderId(other)).toBe(false);
  });

  it('says which providers it knows when it is given one it does not, echoing at most 40 characters of the input', () => {
    const message = unknownProviderMessage('x'.repeat(100));
    expect(message).toBe(`unknown provider "${'x'.repeat(40)}"; known: ${PROVIDER_IDS.join(', ')}`);
    const error = unknownProviderError('dropbox');
    expect(error.code).toBe('provider_unknown');
    expect(error.message).toBe(`unknown provider "dropbox"; known: ${PROVIDER_IDS.join(', ')}`);
  });
});

describe('broker code names no provider', () => {
  const ids = PROVIDER_IDS;

  it('the scan finds a provider id in strings, templates and property names, and not in comments', () => {
    const [id] = ids;
    const sample = [
      `// ${id} in a comment is fine`,
      `/** so is '${id}' in a doc comment */`,
      `const a = '${id}';`,
      `const b = \`known: \${list}, ${id}\`;`,
      `const c = config.providers.${id};`,
      `const d = { ${id}: 1 };`,
      `const e = 'x-${id}x-header';`,
      `import { ${id} } from './definitions/${id}.provider';`,
    ].join('\n');
    expect(providerMentions('sample.ts', sample, ids).map((m) => m.where)).toEqual(['sample.ts:3', 'sample.ts:4', 'sample.ts:5', 'sample.ts:6']);
  });

  it('outside libs/providers/src/definitions/, no source file spells a provider id', () => {
    const files = SCANNED_ROOTS.flatMap(sourceFiles).filter((path) => !path.startsWith(EXEMPT_DIRECTORY));
    // The scan must see the broker, or an empty list would pass for a clean one.
    expect(files).toEqual(expect.arrayContaining(['apps/token-broker/src/main.ts', 'libs/providers/src/provider-registry.ts']));
    const mentions = files.flatMap((path) => providerMentions(path, readFileSync(join(ROOT, path), 'utf8'), ids));
    expect(mentions.map((m) => `${m.where}  ${m.text}`)).toEqual([]);
  });
});
