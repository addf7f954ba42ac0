"""CUDA-event timing shared by the GPU benchmarks (peers.py, linear.py, decode.py)."""
import statistics

import torch


def cuda_times_ms(fn, reps, inner=1, warmup=3):
    """Per-call times in ms of `reps` batches of `inner` calls fn(i) (i counts every call, so a
    caller can rotate inputs), CUDA events around each batch on the current stream, after `warmup`
    calls and a synchronize."""
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    times, n = [], 0
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn(n)
            n += 1
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return times


def median_ms(fn, reps, inner=1):
    """The median of cuda_times_ms(fn, reps, inner), fn taking no argument."""
    return statistics.median(cuda_times_ms(lambda _: fn(), reps, inner))
