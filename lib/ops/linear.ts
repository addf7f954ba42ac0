import { AttnError, asAttnError } from '../errors';
import { Tensor, kNative } from '../tensor';
import { native, LinearArg, LinearArgs } from '../native/binding';
import { LINEAR_DESCRIPTOR_LENGTH, LINEAR_OPTIONS, LinearOption, LinearSlot, writeTensorRecord } from '../native/descriptor';
import { abortedError, disposeAll, float32ArrayArg, startNativeAsync, numberArg, optionalTensorArg, sameDevice, signalArg, tensorArg } from './args';

/**
 * phi, applied to q and k. 'elu1' = elu(x) + 1 (Katharopoulos et al.); 'efficient' = Shen et al.'s
 * Efficient Attention: a softmax over the features of each query and over the sequence of each key
 * dimension (non-causal only).
 */
export type FeatureMap = 'identity' | 'elu1' | 'relu' | 'efficient';

/** Codes shared with native/core/linear_params.h (enum class FeatureMap). */
const FEATURE_MAP: Record<FeatureMap, number> = { identity: 0, elu1: 1, relu: 2, efficient: 3 };

/**
 * Options shared by linearAttention and linearAttentionStep. Where the issue left a choice open,
 * flash-linear-attention's: no feature map by default (its chunk_simple_gla / chunk_gla take q and k
 * as given), scale applied to the feature-mapped query, and the normalizer's 1e-10.
 */
export interface LinearCommonOptions {
  /** Default 'identity'. */
  featureMap?: FeatureMap;
  /** Per-head constant decay lambda in (0, 1] (Lightning Attention, RetNet): a number for every head, or one per head [H]. */
  decay?: number | Float32Array | number[];
  /**
   * Log forget gates (<= 0; -Infinity resets the state): [B, H, S] one per step (Mamba-2 SSD, simple
   * GLA) or [B, H, S, Dk] one per step and key dimension (GLA). Any float dtype. At most one of decay and logGates.
   */
  logGates?: Tensor;
  /** Divide by scale * phi(q_t) . z_t + 1e-10, z_t the (equally decayed) running sum of phi(k). */
  normalize?: boolean;
  /** Multiplies phi(q) (default 1). */
  scale?: number;
  /** Written in place (any strides, any float dtype) and returned. Default: a new tensor of q's dtype. */
  out?: Tensor;
  signal?: AbortSignal;
}

export interface LinearAttentionOptions extends LinearCommonOptions {
  /**
   * Default true: out_t reads the state after step t. false: every query reads the state after the
   * whole sequence (without decay: phi(Q) (phi(K)^T V); with it, the keys decayed to the last step).
   */
  causal?: boolean;
  /** float32 [B, H, Dk, Dv]: the state before the first step (default zeros). */
  initialState?: Tensor;
  /** float32 [B, H, Dk]: the normalizer z before the first step; with normalize, given together with initialState. */
  initialNormalizer?: Tensor;
  /** Also return the final state (float32 [B, H, Dk, Dv]) and, with normalize, the final normalizer [B, H, Dk]. */
  returnState?: boolean;
  /** Rows per chunk (default 64, at most 1024): quadratic inside a chunk, the state recurrence across. */
  chunkSize?: number;
}

export interface LinearAttentionStepOptions extends LinearCommonOptions {
  /** float32 [B, H, Dk], updated in place like the state: required with normalize. */
  normalizer?: Tensor;
}

/** What linearAttention returns with returnState. */
export interface LinearAttentionResult { out: Tensor; state: Tensor; normalizer?: Tensor }

// One descriptor reused by every call: native reads it synchronously, before the call returns.
const descriptor = new Float64Array(LINEAR_DESCRIPTOR_LENGTH);
const EMPTY = new Float32Array(0);

interface Marshalled {
  args: LinearArgs;
  out: Tensor;
  state: Tensor | undefined;
  normalizer: Tensor | undefined;
  signal: AbortSignal | undefined;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  return typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : typeof v;
}

// Device tensors this call allocated (out, state, normalizer): disposed again if the call fails.
function marshal(op: string, q_: unknown, k_: unknown, v_: unknown, state_: unknown, opts: unknown, owned: Tensor[]): Marshalled {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
    throw new AttnError('ERR_ATTN_ARGUMENT', `${op} options must be an object`);
  }
  const step = op === 'linearAttentionStep';
  const o = (opts ?? {}) as LinearAttentionOptions & LinearAttentionStepOptions;
  const q = tensorArg('q', q_), k = tensorArg('k', k_), v = tensorArg('v', v_);
  const gates = optionalTensorArg('logGates', o.logGates);
  const given = optionalTensorArg('out', o.out);
  const initialState = step ? tensorArg('state', state_) : optionalTensorArg('initialState', o.initialState);
  const initialNormalizer = step ? optionalTensorArg('normalizer', o.normalizer) : optionalTensorArg('initialNormalizer', o.initialNormalizer);
  // Every tensor where q is (checked again natively): the CPU kernel or the CUDA library on q's device.
  for (const [name, t] of [['k', k], ['v', v], ['logGates', gates], ['out', given],
    [step ? 'state' : 'initialState', initialState], [step ? 'normalizer' : 'initialNormalizer', initialNormalizer]] as [string, Tensor | undefined][]) {
    if (t) sameDevice(name, t, 'q', q);
  }

  const fm = o.featureMap ?? 'identity';
  if (typeof fm !== 'string' || !Object.prototype.hasOwnProperty.call(FEATURE_MAP, fm)) {
    throw new AttnError('ERR_ATTN_ARGUMENT', `featureMap must be 'identity', 'elu1', 'relu' or 'efficient', got ${typeof fm === 'string' ? `'${fm}'` : describe(fm)}`);
  }
  let decayKind = 0, decayValue = 1;
  let decayArray: Float32Array | null = null;
  if (typeof o.decay === 'number') {
    decayKind = 1;
    decayValue = o.decay;
  } else if (o.decay !== undefined && o.decay !== null) {
    if (!(o.decay instanceof Float32Array) && !Array.isArray(o.decay)) {
      throw new AttnError('ERR_ATTN_ARGUMENT', `decay must be a number or a Float32Array [H] of lambdas in (0, 1], got ${describe(o.decay)}`);
    }
    decayArray = float32ArrayArg('decay', o.decay);
    decayKind = 2;
  }
  const normalize = !!o.normalize;
  const returnState = !step && !!o.returnState;

  const ranksOk = q.rank === 4 && v.rank === 4;
  const [B, H, S, Dk] = ranksOk ? q.shape : [0, 0, 0, 0];
  const Dv = ranksOk ? v.shape[3] : 0;
  // With bad ranks the native side reports the error on q/k/v before it looks at the outputs.
  // New outputs go where q is (native checks that every tensor is there).
  const device = q.device;
  const out = given ?? (ranksOk ? Tensor.empty([B, H, S, Dv], { dtype: q.dtype, device }) : Tensor.from(EMPTY, [0]));
  const state = step ? initialState : returnState ? Tensor.empty(ranksOk ? [B, H, Dk, Dv] : [0], { device }) : undefined;
  const normalizer = step ? (normalize ? initialNormalizer : undefined)
    : returnState && normalize ? Tensor.empty(ranksOk ? [B, H, Dk] : [0], { device }) : undefined;
  if (device !== 'cpu') {
    if (!given) owned.push(out);
    if (!step) for (const t of [state, normalizer]) if (t) owned.push(t);
  }

  const d = descriptor;
  writeTensorRecord(d, LinearSlot.Q, q, 'q');
  writeTensorRecord(d, LinearSlot.K, k, 'k');
  writeTensorRecord(d, LinearSlot.V, v, 'v');
  writeTensorRecord(d, LinearSlot.Out, out, 'out');
  if (gates) writeTensorRecord(d, LinearSlot.Gates, gates, 'logGates');
  if (initialState) writeTensorRecord(d, LinearSlot.InitialState, initialState, step ? 'state' : 'initialState');
  if (initialNormalizer) writeTensorRecord(d, LinearSlot.InitialNormalizer, initialNormalizer, step ? 'normalizer' : 'initialNormalizer');
  if (state) writeTensorRecord(d, LinearSlot.StateOut, state, 'state');
  if (normalizer) writeTensorRecord(d, LinearSlot.NormalizerOut, normalizer, 'normalizer');
  const opt = LINEAR_OPTIONS;
  d[opt + LinearOption.Step] = step ? 1 : 0;
  d[opt + LinearOption.Causal] = step || (o.causal ?? true) ? 1 : 0;
  d[opt + LinearOption.FeatureMap] = FEATURE_MAP[fm];
  d[opt + LinearOption.Scale] = numberArg('scale', o.scale, 1);
  d[opt + LinearOption.Normalize] = normalize ? 1 : 0;
  // A step's few tokens make one chunk (no larger: scratch and padding scale with the chunk).
  d[opt + LinearOption.Chunk] = step ? Math.min(64, Math.max(1, ranksOk ? S : 1)) : numberArg('chunkSize', o.chunkSize, 64);
  d[opt + LinearOption.DecayKind] = decayKind;
  d[opt + LinearOption.Decay] = decayValue;
  d[opt + LinearOption.HasGates] = gates ? 1 : 0;
  d[opt + LinearOption.HasInitialState] = initialState ? 1 : 0;
  d[opt + LinearOption.HasInitialNormalizer] = initialNormalizer ? 1 : 0;
  d[opt + LinearOption.HasStateOut] = state ? 1 : 0;
  d[opt + LinearOption.HasNormalizerOut] = normalizer ? 1 : 0;

  const nat = (t: Tensor | undefined) => (t ? t[kNative]() : null);
  const args: LinearArgs = [
    q[kNative](), k[kNative](), v[kNative](), out[kNative](), nat(gates), nat(initialState), nat(initialNormalizer),
    nat(state), nat(normalizer), decayArray, d, null, -1,
  ];
  return { args, out, state: step ? undefined : state, normalizer: step ? undefined : normalizer, signal: signalArg(o.signal) };
}

function result(m: Marshalled): Tensor | LinearAttentionResult {
  if (!m.state) return m.out;
  return m.normalizer ? { out: m.out, state: m.state, normalizer: m.normalizer } : { out: m.out, state: m.state };
}

function callSync(op: string, q: unknown, k: unknown, v: unknown, state: unknown, opts: unknown): Tensor | LinearAttentionResult {
  const owned: Tensor[] = [];
  try {
    const m = marshal(op, q, k, v, state, opts, owned);
    if (m.signal?.aborted) throw abortedError(op);
    native().linearAttentionSync(...m.args);
    return result(m);
  } catch (e) {
    disposeAll(owned);
    throw asAttnError(e);
  }
}

function callAsync(op: string, q: unknown, k: unknown, v: unknown, state: unknown, opts: unknown): Promise<Tensor | LinearAttentionResult> {
  const owned: Tensor[] = [];
  try {
    const m = marshal(op, q, k, v, state, opts, owned);
    // linearAttention polls the abort flag between chunks; a step reads it once, before it starts.
    const slots = { lastData: LinearArg.LastData, abortFlag: LinearArg.AbortFlag, resizable: LinearArg.Resizable };
    return startNativeAsync(m.args, slots, m.signal, op, () => native().linearAttentionAsync(...m.args))
      .then(() => result(m), (e: unknown) => { disposeAll(owned); throw asAttnError(e); });
  } catch (e) {
    disposeAll(owned);
    return Promise.reject(asAttnError(e));
  }
}

/**
 * Linear attention, chunkwise (quadratic inside chunks of chunkSize rows, the state recurrence
 * across), on the calling thread. q, k [B, H, S, Dk], v [B, H, S, Dv]; per (b, h):
 *   S_t = a_t S_{t-1} + phi(k_t)^T v_t,  out_t = scale phi(q_t) S_t  (causal; non-causal: S_S for every t)
 * with a_t from decay (lambda) or logGates (exp(g_t), per step or per key dimension), 1 otherwise.
 */
export function linearAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts: LinearAttentionOptions & { returnState: true }): LinearAttentionResult;
export function linearAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: LinearAttentionOptions): Tensor;
export function linearAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: LinearAttentionOptions): Tensor | LinearAttentionResult {
  return callSync('linearAttention', q, k, v, undefined, opts);
}

/** linearAttentionSync off the JS thread (attnkit's pool). Bad input rejects; never throws. */
export function linearAttention(q: Tensor, k: Tensor, v: Tensor, opts: LinearAttentionOptions & { returnState: true }): Promise<LinearAttentionResult>;
export function linearAttention(q: Tensor, k: Tensor, v: Tensor, opts?: LinearAttentionOptions): Promise<Tensor>;
export function linearAttention(q: Tensor, k: Tensor, v: Tensor, opts?: LinearAttentionOptions): Promise<Tensor | LinearAttentionResult> {
  return callAsync('linearAttention', q, k, v, undefined, opts);
}

/**
 * Decoding: T new tokens (q, k [B, H, T, Dk], v [B, H, T, Dv], T small, usually 1) through the
 * causal recurrence, starting from `state` (float32 [B, H, Dk, Dv]) and leaving the state after the
 * last token in it (in place); with normalize, opts.normalizer [B, H, Dk] likewise. Same decay /
 * logGates ([B, H, T] or [B, H, T, Dk]) / featureMap / scale options as linearAttention. Returns out.
 */
export function linearAttentionStepSync(q: Tensor, k: Tensor, v: Tensor, state: Tensor, opts?: LinearAttentionStepOptions): Tensor {
  return callSync('linearAttentionStep', q, k, v, state, opts) as Tensor;
}

/**
 * linearAttentionStepSync off the JS thread (small steps run inline and return a settled promise).
 * An abort counts only before the step starts: a step that has started finishes, so the state is
 * never left half updated.
 */
export function linearAttentionStep(q: Tensor, k: Tensor, v: Tensor, state: Tensor, opts?: LinearAttentionStepOptions): Promise<Tensor> {
  return callAsync('linearAttentionStep', q, k, v, state, opts) as Promise<Tensor>;
}
