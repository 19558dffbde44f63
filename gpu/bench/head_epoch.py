#!/usr/bin/env python3
"""The ImageNet-head setting for the GPU check: generates a 1 281 167 × 2048 → 1000-class
embedding set (float32 .npy; a planted linear teacher plus noise, so that training is
meaningful) and times one epoch of the same head training in PyTorch with the reference loss
(difftopk 0.2.0: splitter selection, m = 16, P_K = [.5,0,0,0,.5], logistic_phi λ = .5, β = 1,
'sm'), AdamW, data already on the GPU. Prints one JSON line. `difftopk train --device cuda`
is then run on the same files by device-check.sh.

    python3 gpu/bench/head_epoch.py OUTPUT_DIR [--rows 1281167] [--batch-size 4096] [--lr 0.05]
"""
import argparse
import json
import os
import sys
import time
import types

import numpy as np
import torch


def register_spmm_stand_in():
    try:
        import torch_sparse  # noqa: F401
    except ImportError:
        def spmm(index, value, rows, columns, matrix):
            gathered = matrix.index_select(0, index[1]) * value.unsqueeze(-1)
            out = torch.zeros(rows, matrix.shape[1], dtype=gathered.dtype, device=gathered.device)
            return out.index_add(0, index[0], gathered)
        module = types.ModuleType('torch_sparse')
        module.spmm = spmm
        sys.modules['torch_sparse'] = module


def generate(directory, rows, dimension, classes, device, seed=0):
    """X ~ N(0, 1) rows, y = argmax(X·T + 2·noise) for a random teacher T; written in chunks."""
    os.makedirs(directory, exist_ok=True)
    x_path, y_path = f'{directory}/X_train.npy', f'{directory}/y_train.npy'
    if os.path.exists(x_path) and os.path.exists(y_path):
        return x_path, y_path
    generator = torch.Generator(device=device).manual_seed(seed)
    teacher = torch.randn(dimension, classes, device=device, generator=generator) / dimension ** 0.5
    x_file = np.lib.format.open_memmap(x_path + '.tmp', mode='w+', dtype=np.float32,
                                       shape=(rows, dimension))
    labels = np.empty(rows, dtype=np.int64)
    chunk = 65536
    for start in range(0, rows, chunk):
        count = min(chunk, rows - start)
        x = torch.randn(count, dimension, device=device, generator=generator)
        scores = x @ teacher + 2.0 * torch.randn(count, classes, device=device, generator=generator)
        x_file[start:start + count] = x.cpu().numpy()
        labels[start:start + count] = scores.argmax(1).cpu().numpy()
    del x_file  # no flush: the next process reads it from the page cache
    # Labels first: X's final name appearing means the set is complete.
    np.save(y_path, labels)
    os.replace(x_path + '.tmp', x_path)
    return x_path, y_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('directory')
    parser.add_argument('--rows', type=int, default=1281167)
    parser.add_argument('--dimension', type=int, default=2048)
    parser.add_argument('--classes', type=int, default=1000)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--lr', type=float, default=0.05)
    parser.add_argument('--device', default='cuda')
    args = parser.parse_args()
    start = time.perf_counter()
    x_path, y_path = generate(args.directory, args.rows, args.dimension, args.classes, args.device)
    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    generated = time.perf_counter() - start
    register_spmm_stand_in()
    import difftopk
    x = torch.from_numpy(np.load(x_path, mmap_mode='r')[:]).to(device)
    y = torch.from_numpy(np.load(y_path)).to(device)
    torch.manual_seed(0)
    head = torch.nn.Linear(args.dimension, args.classes).to(device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0)
    loss_fn = difftopk.TopKCrossEntropyLoss(
        'splitter_selection', 1.0, [.5, 0., 0., 0., .5], n=args.classes, m=16,
        distribution='logistic_phi', art_lambda=.5, device=str(device), top1_mode='sm')
    order = torch.randperm(args.rows, device=device)
    synchronize()
    start = time.perf_counter()
    total = 0.0
    for first in range(0, args.rows, args.batch_size):
        index = order[first:first + args.batch_size]
        loss = loss_fn(head(x[index]), y[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += loss.detach() * index.numel()
    synchronize()
    epoch = time.perf_counter() - start
    print(json.dumps(dict(pytorch_epoch_s=epoch, train_loss=float(total) / args.rows,
                          rows=args.rows, batch_size=args.batch_size, generate_s=generated,
                          x=x_path, y=y_path, torch=torch.__version__)), flush=True)


if __name__ == '__main__':
    main()
