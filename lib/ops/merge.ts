import { AttnError, asAttnError } from '../errors';
import { Tensor, kNative } from '../tensor';
import { native } from '../native/binding';
import { TENSOR_RECORD, writeTensorRecord } from '../native/descriptor';
import { sameDevice, tensorArg } from './args';

export interface AttentionState { out: Tensor; lse: Tensor }

/**
 * Exact combination of attention over disjoint key sets (split-KV, ring attention, CPU+GPU
 * offload): lse = log(sum exp(lse_p)), out = sum exp(lse_p - lse) * out_p. Parts whose lse is
 * -Infinity contribute nothing; if all are, out is 0 and lse -Infinity. Runs where the parts live
 * (all on one device); the result is on that device.
 */
export function mergeAttentionStates(parts: AttentionState[]): AttentionState {
  const temps: Tensor[] = [];   // device copies made here, disposed when done
  const results: Tensor[] = []; // device results, disposed if the call fails
  try {
    if (!Array.isArray(parts) || parts.length < 1) throw new AttnError('ERR_ATTN_ARGUMENT', 'mergeAttentionStates: parts must be a non-empty array of { out, lse }');
    const outs: Tensor[] = [], lses: Tensor[] = [];
    parts.forEach((p, i) => {
      if (typeof p !== 'object' || p === null) throw new AttnError('ERR_ATTN_ARGUMENT', `parts[${i}] must be { out, lse }`);
      outs.push(tensorArg(`parts[${i}].out`, p.out));
      lses.push(tensorArg(`parts[${i}].lse`, p.lse));
    });
    const o0 = outs[0];
    outs.forEach((t, i) => sameDevice(`parts[${i}].out`, t, 'parts[0].out', o0));
    lses.forEach((t, i) => sameDevice(`parts[${i}].lse`, t, 'parts[0].out', o0));
    const device = o0.device;
    const onDevice = device !== 'cpu';
    if (onDevice) {
      // The CUDA merge reads each lse as contiguous [B, H, S] (attnkit_cuda.h).
      lses.forEach((t, i) => {
        if (!t.isContiguous()) { lses[i] = t.contiguous(); temps.push(lses[i]); }
      });
    }
    const out = Tensor.empty(o0.shape.slice(), { dtype: o0.dtype, device });
    if (onDevice) results.push(out);
    const lse = Tensor.empty(o0.rank === 4 ? o0.shape.slice(0, 3) : [0], { dtype: 'float32', device });
    if (onDevice) results.push(lse);
    const n = parts.length;
    const desc = new Float64Array((2 * n + 2) * TENSOR_RECORD);
    outs.forEach((t, i) => writeTensorRecord(desc, i, t, `parts[${i}].out`));
    lses.forEach((t, i) => writeTensorRecord(desc, n + i, t, `parts[${i}].lse`));
    writeTensorRecord(desc, 2 * n, out, 'out');
    writeTensorRecord(desc, 2 * n + 1, lse, 'lse');
    native().mergeStates(outs.map((t) => t[kNative]()), lses.map((t) => t[kNative]()), out[kNative](), lse[kNative](), desc);
    return { out, lse };
  } catch (e) {
    for (const t of results) t.dispose();
    throw asAttnError(e);
  } finally {
    for (const t of temps) t.dispose();
  }
}
