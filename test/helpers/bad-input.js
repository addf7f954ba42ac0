'use strict';
// The bad-input contract shared by the op tables (errors.test.js, block-sparse.test.js): the sync
// form throws and the async form returns a promise that rejects, never throws, each with an
// AttnError of the expected code whose message names the argument.
const { types } = require('util');
const { AttnError } = require('../..');

function checkError(err, code, mention, label) {
  expect(err).toBeInstanceOf(AttnError);
  expect(err).toBeInstanceOf(Error);
  expect(err.name).toBe('AttnError');
  if (err.code !== code) throw new Error(`${label}: expected ${code}, got ${err.code}: ${err.message}`);
  expect(typeof err.message).toBe('string');
  if (!mention.test(err.message)) throw new Error(`${label}: message does not name the argument (${mention}): ${err.message}`);
}

// callSync() and callAsync() each make one call of the op named `op` on fresh arguments.
async function expectRefusedBothWays(name, op, callSync, callAsync, code, mention) {
  let syncErr, syncResult;
  try { syncResult = callSync(); } catch (e) { syncErr = e; }
  if (syncErr === undefined) throw new Error(`${name}: ${op}Sync returned ${syncResult && syncResult.constructor.name} instead of throwing`);
  checkError(syncErr, code, mention, `${name} (sync)`);

  let promise, thrown;
  try { promise = callAsync(); } catch (e) { thrown = e; }
  if (thrown !== undefined) throw new Error(`${name}: ${op} threw synchronously: ${thrown && thrown.message}`);
  expect(types.isPromise(promise)).toBe(true);
  const asyncErr = await promise.then(() => undefined, (e) => e);
  if (asyncErr === undefined) throw new Error(`${name}: ${op} resolved instead of rejecting`);
  checkError(asyncErr, code, mention, `${name} (async)`);
}

module.exports = { checkError, expectRefusedBothWays };
