export * from './resume-client.js';
export { createNodeSocket } from './node-socket.js';
