// Child of bench/micro/idle-lab.mjs: N simulated idle VMs (src/sim from DIST), their addresses sent to the
// parent; stops on any message. Usage (by fork only): idle-sim.mjs DIST VMS
import { pathToFileURL } from 'node:url';

const { startSimulator } = await import(pathToFileURL(`${process.argv[2]}/sim/index.js`).href);
const sim = await startSimulator({ vms: Number(process.argv[3]), tickMs: 50 });
process.send({ addresses: Object.fromEntries(sim.vms.map((vm) => [vm.name, vm.address()])) });
process.on('message', async () => {
  await sim.close();
  process.exit(0);
});
