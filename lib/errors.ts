/** Stable error codes carried by every AttnError. */
export type AttnErrorCode =
  | 'ERR_ATTN_SHAPE'
  | 'ERR_ATTN_DTYPE'
  | 'ERR_ATTN_DEVICE'
  | 'ERR_ATTN_ARGUMENT'
  | 'ERR_ATTN_ABORTED'
  | 'ERR_ATTN_DISPOSED'
  | 'ERR_ATTN_OOM'
  | 'ERR_ATTN_CACHE_FULL'
  | 'ERR_ATTN_CUDA_UNAVAILABLE'
  | 'ERR_ATTN_NATIVE_LOAD';

/** The one error type attnkit throws or rejects with. `code` is stable; `message` names the argument. */
export class AttnError extends Error {
  readonly code: AttnErrorCode;
  constructor(code: AttnErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttnError';
    this.code = code;
  }
}

/** Any failure as an AttnError: ours pass through, anything else becomes ERR_ATTN_ARGUMENT with its cause. */
export function asAttnError(e: unknown): AttnError {
  if (e instanceof AttnError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new AttnError('ERR_ATTN_ARGUMENT', message, { cause: e });
}
