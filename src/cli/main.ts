#!/usr/bin/env node
// Placeholder entry point; the CLI helper replaces this with real subcommand dispatch.
console.log('blockjob-gateway');
