import { AttnError, asAttnError } from '../errors';
import { Tensor } from '../tensor';
import { native } from '../native/binding';
import { TENSOR_RECORD, writeTensorRecord } from '../native/descriptor';
import { tensorArg } from './args';
import type { TypedArray } from '../dtype';

export interface AttentionState { out: Tensor; lse: Tensor }

/**
 * Exact combination of attention over disjoint key sets (split-KV, ring attention, CPU+GPU
 * offload): lse = log(sum exp(lse_p)), out = sum exp(lse_p - lse) * out_p. Parts whose lse is
 * -Infinity contribute nothing; if all are, out is 0 and lse -Infinity.
 */
export function mergeAttentionStates(parts: AttentionState[]): AttentionState {
  try {
    if (!Array.isArray(parts) || parts.length < 1) throw new AttnError('ERR_ATTN_ARGUMENT', 'mergeAttentionStates: parts must be a non-empty array of { out, lse }');
    const outs: Tensor[] = [], lses: Tensor[] = [];
    parts.forEach((p, i) => {
      if (typeof p !== 'object' || p === null) throw new AttnError('ERR_ATTN_ARGUMENT', `parts[${i}] must be { out, lse }`);
      outs.push(tensorArg(`parts[${i}].out`, p.out));
      lses.push(tensorArg(`parts[${i}].lse`, p.lse));
    });
    const o0 = outs[0];
    const out = Tensor.empty(o0.shape.slice(), { dtype: o0.dtype });
    const lse = Tensor.empty(o0.rank === 4 ? o0.shape.slice(0, 3) : [0], { dtype: 'float32' });
    const n = parts.length;
    const desc = new Float64Array((2 * n + 2) * TENSOR_RECORD);
    outs.forEach((t, i) => writeTensorRecord(desc, i, t, `parts[${i}].out`));
    lses.forEach((t, i) => writeTensorRecord(desc, n + i, t, `parts[${i}].lse`));
    writeTensorRecord(desc, 2 * n, out, 'out');
    writeTensorRecord(desc, 2 * n + 1, lse, 'lse');
    native().mergeStates(outs.map((t) => t.data as TypedArray), lses.map((t) => t.data as TypedArray), out.data, lse.data, desc);
    return { out, lse };
  } catch (e) {
    throw asAttnError(e);
  }
}
