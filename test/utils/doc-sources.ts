/**
 * Reading the docs the way the doc checks need them: files, fenced code blocks (with the
 * `<!-- doc-check: NAME -->` marker that names the test running a block), shell command lines split
 * into words, markdown tables under a heading, and the `-qmp` arguments shown anywhere.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function readRepo(path: string): string {
  return readFileSync(new URL(path, `file://${REPO_ROOT}`), 'utf8');
}

/** The docs this project's doc checks own: every shell command in them must be accounted for. */
export const OWNED_DOCS = ['README.md', 'docs/architecture.md', 'docs/operations.md', 'docs/deploy.md'] as const;

/** Every markdown file users read; `blockjob-gateway` command lines in any of them must parse. */
export function allDocs(): string[] {
  const docs = readdirSync(new URL('docs/', `file://${REPO_ROOT}`)).filter((name) => name.endsWith('.md'));
  return ['README.md', 'PROTOCOL.md', ...docs.map((name) => `docs/${name}`)];
}

/** The example deployment files, and the paths they stand for on an installed host. */
export const DEPLOY_FILES = {
  unit: 'deploy/blockjob-gateway.service',
  config: 'deploy/gateway.json',
  tokens: 'deploy/tokens.example.json',
  libvirt: 'deploy/libvirt-domain.xml',
  proxmox: 'deploy/proxmox-vm.conf',
} as const;

/** Installed paths in the docs -> the repository file that is their example. */
export const INSTALLED_PATHS: Readonly<Record<string, string>> = {
  '/etc/blockjob-gateway/gateway.json': DEPLOY_FILES.config,
  '/etc/blockjob-gateway/tokens.json': DEPLOY_FILES.tokens,
};

/** Blocks marked `<!-- doc-check: NAME -->` and the test that runs each. */
export const MARKED_BLOCKS: Readonly<Record<string, string>> = {
  'qsd-example': 'test/qemu/docs-deploy.test.ts',
  'serve-example': 'test/qemu/docs-deploy.test.ts',
  'script-example': 'test/qemu/docs-deploy.test.ts',
  'walk-images': 'test/qemu/docs-deploy.test.ts',
  'walk-qsd': 'test/qemu/docs-deploy.test.ts',
  'walk-qmp': 'test/qemu/docs-deploy.test.ts',
  'token-recipe': 'test/unit/docs/deploy-files.test.ts',
};

export interface CodeBlock {
  file: string;
  lang: string;
  text: string;
  /** From a `<!-- doc-check: NAME -->` line right before the fence. */
  marker?: string;
  line: number;
}

export function codeBlocks(file: string, markdown = readRepo(file)): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    const marker = /^\s*<!-- doc-check: ([\w-]+) -->\s*$/.exec(lines[i - 1] ?? '')?.[1];
    blocks.push({ file, lang: open[2]!, text: body.join('\n'), line: i + 1, ...(marker ? { marker } : {}) });
    i = j;
  }
  return blocks;
}

export function markedBlock(file: string, marker: string): CodeBlock {
  const found = codeBlocks(file).filter((block) => block.marker === marker);
  if (found.length !== 1) throw new Error(`${file}: expected one block marked doc-check: ${marker}, found ${found.length}`);
  return found[0]!;
}

export const SHELL_LANGS = new Set(['sh', 'bash', 'shell', 'console']);

/** Command lines of a shell block: continuations joined, comments and prompts removed, `&&` split. */
export function shellCommands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => line.replace(/^\$\s+/, '').replace(/\s+#\s.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .flatMap((line) => line.split(/\s+&&\s+/));
}

/** Shell words with '...' and "..." quoting (no expansion: `$x` stays as written). */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  const pattern = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+?)(?=\s|$|'|")|\s+/g;
  let current: string | undefined;
  for (const match of command.matchAll(pattern)) {
    if (/^\s+$/.test(match[0])) {
      if (current !== undefined) words.push(current);
      current = undefined;
      continue;
    }
    current = (current ?? '') + (match[1] ?? match[2] ?? match[3] ?? '');
  }
  if (current !== undefined) words.push(current);
  return words;
}

/** `blockjob-gateway ...` command lines (words after the program name) in shell blocks of `file`. */
export function gatewayCommands(file: string): Array<{ file: string; line: number; command: string; argv: string[] }> {
  return codeBlocks(file)
    .filter((block) => SHELL_LANGS.has(block.lang))
    .flatMap((block) =>
      shellCommands(block.text)
        .map((command) => ({ command, words: shellWords(command) }))
        .filter(({ words }) => words[0] === 'blockjob-gateway' || (words[0] === 'npx' && words[1] === 'blockjob-gateway'))
        .map(({ command, words }) => ({ file, line: block.line, command, argv: words.slice(words[0] === 'npx' ? 2 : 1) })),
    );
}

/** Rows of the first markdown table after the heading `heading`, as trimmed cells (header excluded). */
export function tableUnder(file: string, heading: string): string[][] {
  const lines = readRepo(file).split('\n');
  const start = lines.findIndex((line) => line.replace(/^#+\s*/, '') === heading && line.startsWith('#'));
  if (start < 0) throw new Error(`${file}: no heading "${heading}"`);
  const rows: string[][] = [];
  let inTable = false;
  for (const line of lines.slice(start + 1)) {
    if (/^#/.test(line)) break;
    if (!line.startsWith('|')) {
      if (inTable) break;
      continue;
    }
    inTable = true;
    const cells = line
      .replace(/\\\|/g, '\u0000')
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.replace(/\u0000/g, '|').trim());
    if (cells.every((cell) => /^-+$/.test(cell))) continue;
    rows.push(cells);
  }
  return rows.slice(1);
}

/** The text inside the first pair of backticks of a table cell. */
export function code(cell: string): string {
  return /`([^`]*)`/.exec(cell)?.[1] ?? '';
}

/** Every `-qmp` argument the docs and deploy files show (plain QEMU, Proxmox, libvirt). */
export function qmpArguments(): Array<{ where: string; value: string }> {
  const found: Array<{ where: string; value: string }> = [];
  for (const file of [...OWNED_DOCS, DEPLOY_FILES.proxmox]) {
    for (const match of readRepo(file).matchAll(/-qmp\s+'?((?:unix:\/|tcp:)[^\s'"`]+)/g)) found.push({ where: file, value: match[1]! });
  }
  for (const file of [...OWNED_DOCS, DEPLOY_FILES.libvirt]) {
    for (const match of readRepo(file).matchAll(/<qemu:arg value='-qmp'\/>\s*<qemu:arg value='([^']+)'\/>/g)) found.push({ where: `${file} (libvirt)`, value: match[1]! });
  }
  return found;
}

/**
 * QEMU's own rule for the legacy chardev spelling that `-qmp` takes (chardev/char.c,
 * qemu_chr_parse_compat): `unix:PATH,OPTS` is the socket backend with PATH as its `path`, OPTS
 * unchanged. `-qmp X` then adds a control-mode monitor on that chardev, which is what
 * `--chardev socket,id=ID,path=PATH,OPTS --monitor chardev=ID` gives qemu-storage-daemon.
 */
export function qmpToChardev(value: string, id: string): string {
  const match = /^unix:([^,]+)(,.*)?$/.exec(value);
  if (!match) throw new Error(`-qmp ${value}: only the unix: form is documented and checked`);
  return `socket,id=${id},path=${match[1]}${match[2] ?? ''}`;
}
