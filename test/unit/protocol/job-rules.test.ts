// The protocol's client-side view of QEMU's rules must say exactly what the rules' home says.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CommandAction, JobStatusName } from '../../../src/generated/schema-types.js';
import { isTerminalState, verbAcceptedIn } from '../../../src/jobs/qemu-rules.js';
import { isEnded, VERB_STATES } from '../../../src/protocol/job-rules.js';

const schema = JSON.parse(readFileSync(new URL('../../../schemas/job-state.schema.json', import.meta.url), 'utf8')) as {
  definitions: Record<string, { title?: string; enum?: string[] }>;
};
const STATES = Object.values(schema.definitions).find((d) => d.title === 'JobStatusName')!.enum as JobStatusName[];
const VERBS = Object.keys(VERB_STATES) as CommandAction[];

describe('protocol job rules', () => {
  it('cover every normalized state and every verb', () => {
    expect(STATES).toContain('dismissed');
    expect(VERBS.sort()).toEqual(['cancel', 'complete', 'dismiss', 'finalize', 'pause', 'resume', 'set-speed']);
  });

  it.each(STATES)('%s: ended and verbs accepted exactly as src/jobs/qemu-rules.ts says', (state) => {
    expect(isEnded({ state })).toBe(isTerminalState(state));
    const qemuStatus = state === 'dismissed' ? 'null' : state;
    for (const verb of VERBS) expect([verb, VERB_STATES[verb].includes(state)]).toEqual([verb, verbAcceptedIn(verb, qemuStatus)]);
  });
});
