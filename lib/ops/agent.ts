import { AttnError, asAttnError } from '../errors';
import { Tensor } from '../tensor';
import { attention, attentionSync } from './attention';
import { optionalTensorArg, tensorArg } from './args';

/** agentAttention's options: those of attention that apply to both of its softmaxes. */
export interface AgentAttentionOptions {
  /** Both score scales (agents . k and q . agent); default 1/sqrt(D). */
  scale?: number;
  /** Written in place (any strides, any float dtype) and returned. */
  out?: Tensor;
  signal?: AbortSignal;
}

interface Planned { agents: Tensor; agentValues: Tensor }

// The agents broadcast to [B, Hq, nA, D] as a zero-copy view (stride 0 over a broadcast dim), and
// the agent values [B, Hq, nA, Dv] the first softmax writes. The agent values take q's dtype: the
// second call reads them as its v, and attention's q, k, v share one dtype.
function plan(q_: unknown, k_: unknown, v_: unknown, agents_: unknown): Planned {
  const q = tensorArg('q', q_), k = tensorArg('k', k_), v = tensorArg('v', v_), a = tensorArg('agents', agents_);
  if (q.rank !== 4) throw new AttnError('ERR_ATTN_SHAPE', `q must have rank 4 [B, Hq, Sq, D], got shape [${q.shape.join(', ')}]`);
  if (v.rank !== 4) throw new AttnError('ERR_ATTN_SHAPE', `v must have rank 4 [B, Hkv, Sk, Dv], got shape [${v.shape.join(', ')}]`);
  if (a.rank !== 4) throw new AttnError('ERR_ATTN_SHAPE', `agents must have rank 4 [B | 1, Hq | 1, nA, D], got shape [${a.shape.join(', ')}]`);
  const [B, Hq, , D] = q.shape;
  const [Ba, Ha, nA, Da] = a.shape;
  if ((Ba !== 1 && Ba !== B) || (Ha !== 1 && Ha !== Hq) || Da !== D) {
    throw new AttnError('ERR_ATTN_SHAPE', `agents must have shape [B | 1, Hq | 1, nA, D] with q's B = ${B}, Hq = ${Hq} and D = ${D}, got [${a.shape.join(', ')}]`);
  }
  if (nA < 1) throw new AttnError('ERR_ATTN_SHAPE', `agents must hold at least one agent (nA >= 1), got shape [${a.shape.join(', ')}]`);
  if (a.dtype !== q.dtype) throw new AttnError('ERR_ATTN_DTYPE', `agents must have q's dtype ${q.dtype}, got ${a.dtype}`);
  if (a.device !== q.device) {
    throw new AttnError('ERR_ATTN_DEVICE', `agents is on ${a.device} but q is on ${q.device}; all tensors of one call must be on one device (move it with .to('${q.device}'))`);
  }
  if (k.device !== q.device || v.device !== q.device) {
    const [name, t] = k.device !== q.device ? ['k', k] : ['v', v];
    throw new AttnError('ERR_ATTN_DEVICE', `${name} is on ${t.device} but q is on ${q.device}; all tensors of one call must be on one device (move it with .to('${q.device}'))`);
  }
  const s = a.strides;
  const agents = a.asStrided([B, Hq, nA, D], [Ba === 1 ? 0 : s[0], Ha === 1 ? 0 : s[1], s[2], s[3]], a.offset);
  const agentValues = Tensor.empty([B, Hq, nA, v.shape[3]], { dtype: q.dtype, device: q.device });
  return { agents, agentValues };
}

function release(p: Planned): void {
  if (p.agentValues.device !== 'cpu') p.agentValues.dispose();
}

/**
 * Agent Attention (Han et al.): softmax(Q A^T) softmax(A K^T) V with nA agent tokens A
 * [B | 1, Hq | 1, nA, D], as two calls of the fused kernel (the agents attend k / v, then q attends
 * the agents and their values), so no Sq x Sk buffer exists. k / v may have fewer heads (GQA).
 */
export function agentAttentionSync(q: Tensor, k: Tensor, v: Tensor, agents: Tensor, opts: AgentAttentionOptions = {}): Tensor {
  try {
    if (typeof opts !== 'object' || opts === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'agentAttention options must be an object');
    const out = optionalTensorArg('out', opts.out);
    const p = plan(q, k, v, agents);
    try {
      attentionSync(p.agents, k, v, { scale: opts.scale, out: p.agentValues, signal: opts.signal });
      return attentionSync(q, p.agents, p.agentValues, { scale: opts.scale, out, signal: opts.signal });
    } finally {
      release(p);
    }
  } catch (e) {
    throw asAttnError(e);
  }
}

/** agentAttentionSync off the JS thread. Bad input rejects; never throws. */
export async function agentAttention(q: Tensor, k: Tensor, v: Tensor, agents: Tensor, opts: AgentAttentionOptions = {}): Promise<Tensor> {
  try {
    if (typeof opts !== 'object' || opts === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'agentAttention options must be an object');
    const out = optionalTensorArg('out', opts.out);
    const p = plan(q, k, v, agents);
    try {
      await attention(p.agents, k, v, { scale: opts.scale, out: p.agentValues, signal: opts.signal });
      return await attention(q, p.agents, p.agentValues, { scale: opts.scale, out, signal: opts.signal });
    } finally {
      release(p);
    }
  } catch (e) {
    throw asAttnError(e);
  }
}
