#!/usr/bin/env python3
"""Times the PyTorch reference, difftopk 0.2.0 (with diffsort 0.2.0), forward + backward of
`TopKCrossEntropyLoss` on the inputs `bench_gpu` wrote (INPUT_DIR/logits_n{n}.npy, labels_n{n}.npy),
for the same configurations, and prints one JSON line per configuration.

    python3 gpu/bench/reference_gpu.py INPUT_DIR [--reps 20] [--device cuda] [--batches 128,4096,65536]

Float32, P_K = [.5,0,0,0,.5], logistic_phi with lambda = .5, inverse temperature 1, top1_mode 'sm';
every timed call is bracketed by torch.cuda.synchronize(). The reference's sparse networks call
`torch_sparse.spmm`; where torch_sparse is not installed, a stand-in with its semantics is
registered (out[r] = sum over entries e with row r of value[e] * matrix[column[e]]).
A configuration that runs out of memory is reported as failed.
"""
import argparse
import json
import statistics
import sys
import time
import types

import numpy as np
import torch


def register_spmm_stand_in():
    try:
        import torch_sparse  # noqa: F401
        return False
    except ImportError:
        pass

    def spmm(index, value, rows, columns, matrix):
        gathered = matrix.index_select(0, index[1]) * value.unsqueeze(-1)
        out = torch.zeros(rows, matrix.shape[1], dtype=gathered.dtype, device=gathered.device)
        return out.index_add(0, index[0], gathered)

    module = types.ModuleType('torch_sparse')
    module.spmm = spmm
    sys.modules['torch_sparse'] = module
    return True


def median_ms(step, reps, synchronize):
    step()  # warm-up, and a probe of the cost
    synchronize()
    start = time.perf_counter()
    step()
    synchronize()
    probe = time.perf_counter() - start
    reps = max(3, min(reps, int(8.0 / max(probe, 1e-6))))  # at most ~8 s per configuration
    samples = []
    for _ in range(reps):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples), reps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('input_dir')
    parser.add_argument('--reps', type=int, default=20)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--batches', default='128,4096,65536')
    parser.add_argument('--deadline', type=float, default=110.0,
                        help='seconds for the whole run; later configurations are reported as skipped')
    args = parser.parse_args()
    started = time.perf_counter()
    stand_in = register_spmm_stand_in()
    import difftopk  # after the stand-in, which it imports

    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    batches = [int(b) for b in args.batches.split(',')]
    inputs = {}
    for n in (1000, 100):
        inputs[n] = (torch.from_numpy(np.load(f'{args.input_dir}/logits_n{n}.npy')).to(device),
                     torch.from_numpy(np.load(f'{args.input_dir}/labels_n{n}.npy')).to(device))
    # The ImageNet-sized rows first, each n's cross-entropy after its m = 16 rows; n = 1000
    # without m last: at batch 65536 the reference trips a device-side assertion (an index out
    # of range in its scatter), which ends the process's CUDA context.
    for n, m in ((1000, 16), (100, 16), (1000, None)):
        logits_all, labels_all = inputs[n]
        methods = ['splitter_selection', 'odd_even', 'bitonic'] if m else ['splitter_selection']
        for method in methods:
            try:  # the network is built once per method and n
                loss_fn = difftopk.TopKCrossEntropyLoss(
                    method, 1.0, [.5, 0., 0., 0., .5], n=n, m=m,
                    distribution='logistic_phi', art_lambda=.5, device=str(device),
                    top1_mode='sm')
            except (RuntimeError, MemoryError) as error:
                loss_fn, build_error = None, str(error).splitlines()[0][:200]
            for batch in batches:
                record = dict(method=method, n=n, m=m, batch=batch, device=str(device),
                              torch=torch.__version__, torch_sparse_stand_in=stand_in)
                logits, labels = logits_all[:batch], labels_all[:batch]
                if time.perf_counter() - started > args.deadline:
                    record['skipped'] = 'deadline'
                    print(json.dumps(record), flush=True)
                    continue
                if loss_fn is None:
                    record['failed'] = build_error
                    print(json.dumps(record), flush=True)
                    continue
                try:

                    def step():
                        x = logits.clone().requires_grad_(True)
                        loss_fn(x, labels).backward()

                    record['median_ms'], record['reps'] = median_ms(step, args.reps, synchronize)
                except (RuntimeError, MemoryError) as error:  # out of memory, mostly
                    record['failed'] = str(error).splitlines()[0][:200]
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
                print(json.dumps(record), flush=True)
        if m is None:
            continue
        # the baseline: torch's cross-entropy on the same rows
        for batch in batches:
            if time.perf_counter() - started > args.deadline:
                break
            logits, labels = logits_all[:batch], labels_all[:batch]

            def step():
                x = logits.clone().requires_grad_(True)
                torch.nn.functional.cross_entropy(x, labels).backward()

            ms, reps = median_ms(step, args.reps, synchronize)
            print(json.dumps(dict(method='cross_entropy', n=n, m=None, batch=batch,
                                  device=str(device), median_ms=ms, reps=reps)), flush=True)


if __name__ == '__main__':
    main()
