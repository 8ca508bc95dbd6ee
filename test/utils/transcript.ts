/**
 * QMP transcripts: what one client connection saw, one JSON object per line (test/fixtures/*.jsonl).
 *
 *   {"kind":"meta","scenario":"mirror-complete","qemu":"7.2.22","package":"...","recordedAt":"..."}
 *   {"kind":"msg","dir":"in","t":0.4,"msg":{"QMP":{...}}}          from QEMU (greeting, reply, event)
 *   {"kind":"msg","dir":"out","t":1.2,"msg":{"execute":"...","id":"raw-1"}}   to QEMU
 *
 * `t` is ms since the connection was made. Written by test/utils/record-transcript.ts.
 */
import { readFileSync } from 'node:fs';

export interface TranscriptMeta {
  kind: 'meta';
  scenario: string;
  qemu: string;
  package: string;
  recordedAt: string;
  description?: string;
}

export interface TranscriptMessage {
  kind: 'msg';
  dir: 'in' | 'out';
  t: number;
  msg: Record<string, unknown>;
}

export interface Transcript {
  meta: TranscriptMeta;
  messages: TranscriptMessage[];
}

export function parseTranscript(text: string, source = 'transcript'): Transcript {
  let meta: TranscriptMeta | undefined;
  const messages: TranscriptMessage[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    let entry: TranscriptMeta | TranscriptMessage;
    try {
      entry = JSON.parse(line) as TranscriptMeta | TranscriptMessage;
    } catch (cause) {
      throw new Error(`${source}:${index + 1}: invalid JSON`, { cause });
    }
    if (entry.kind === 'meta') meta = entry;
    else if (entry.kind === 'msg' && (entry.dir === 'in' || entry.dir === 'out') && typeof entry.msg === 'object') messages.push(entry);
    else throw new Error(`${source}:${index + 1}: expected kind "meta" or "msg" with dir in|out`);
  });
  if (!meta) throw new Error(`${source}: no meta line`);
  return { meta, messages };
}

export function loadTranscript(file: string): Transcript {
  return parseTranscript(readFileSync(file, 'utf8'), file);
}

/** Path of a fixture transcript by name, e.g. fixturePath('mirror-complete'). */
export function fixturePath(name: string): string {
  return new URL(`../fixtures/${name}.jsonl`, import.meta.url).pathname;
}

/** The greeting object (`{QMP: {...}}`) recorded in a transcript. */
export function transcriptGreeting(transcript: Transcript): Record<string, unknown> {
  const greeting = transcript.messages.find((entry) => entry.dir === 'in' && 'QMP' in entry.msg);
  if (!greeting) throw new Error(`transcript ${transcript.meta.scenario} has no greeting`);
  return greeting.msg;
}

/** The events of a transcript, in wire order. */
export function transcriptEvents(transcript: Transcript): Array<{ event: string; data: Record<string, unknown> }> {
  return transcript.messages
    .filter((entry) => entry.dir === 'in' && typeof entry.msg.event === 'string')
    .map((entry) => ({ event: entry.msg.event as string, data: (entry.msg.data as Record<string, unknown> | undefined) ?? {} }));
}
