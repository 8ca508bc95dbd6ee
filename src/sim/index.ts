export { startSimulator, SimulatedVm, type SimJobStart, type Simulator, type SimulatorOptions } from './simulator.js';
export { SimVm, QEMU_7_2_VERSION, type SimVersion, type SimTiming } from './vm.js';
export { SimJob, type InjectedError, type SimJobStatus, type SimJobType } from './job.js';
export { QmpErrorReply } from './errors.js';
