/**
 * Every measurement `npm run bench` knows, in run order: the one list main.ts (names, --only) and
 * host.ts (what to run) read. A new measurement (e.g. fleet, libvirt) is a file in this folder plus
 * one line here; it runs in its own bench host process like the others, so it can run alone with
 * `npm run bench -- --only <name>`.
 */
import type { Scenario } from '../lib/scenario.js';
import { burst } from './burst.js';
import { fanout } from './fanout.js';
import { fleet } from './fleet.js';
import { idle } from './idle.js';
import { libvirt } from './libvirt.js';
import { monitors } from './monitors.js';
import { ready } from './ready.js';

export const SCENARIOS: Readonly<Record<string, Scenario>> = { ready, fanout, idle, monitors, burst, fleet, libvirt };
export const SCENARIO_NAMES: readonly string[] = Object.keys(SCENARIOS);
