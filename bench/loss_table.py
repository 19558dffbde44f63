#!/usr/bin/env python3
"""The README's core-loss table from several runs of the `bench_loss` example.

Each cell is the fastest of the runs' medians for that configuration (this shared machine drifts
by a third between runs; the ratio to softmax cross-entropy comes from the same line as the
chosen median). Standard library only.

    for run in 1 2 3 4 5; do
        cargo run --release -p difftopk-core --features rayon --example bench_loss > run$run.jsonl
    done
    python3 bench/loss_table.py run*.jsonl
"""
import json
import sys

METHODS = ['splitter_selection', 'odd_even', 'bitonic', 'bitonic_any_size', 'softsort', 'neuralsort']


def main(paths):
    if not paths:
        sys.exit('usage: loss_table.py RUN.jsonl [RUN.jsonl ...]')
    fastest = {}
    threads = set()
    for path in paths:
        with open(path) as lines:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    sys.exit(f'{path}, line {number}: not a JSON line of bench_loss ({error})')
                key = (record['n'], record['m'], record['batch'], record['method'], record['threads'])
                threads.add(record['threads'])
                if key not in fastest or record['median_us'] < fastest[key]['median_us']:
                    fastest[key] = record
    many = max(threads)
    print(f'| n | m | batch | method | µs (1 thread) | µs ({many} threads) | softmax CE µs (1 thread) '
          '| ratio to CE | PyTorch reference ms | speed-up |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    shapes = sorted({(n, m, batch) for n, m, batch, _, _ in fastest},
                    key=lambda shape: (shape[1] is None, shape[0], shape[2]))
    for n, m, batch in shapes:
        for method in METHODS:
            one = fastest.get((n, m, batch, method, 1))
            if one is None:
                continue
            all_threads = fastest.get((n, m, batch, method, many), {}).get('median_us')
            reference = one.get('reference_ms')
            cells = [
                str(n),
                'all' if m is None else str(m),
                str(batch),
                method,
                f"{one['median_us']:.0f}",
                '' if all_threads is None else f'{all_threads:.0f}',
                f"{one['softmax_ce_us']:.0f}",
                f"{one['ratio_to_softmax_ce']:.2f}",
                f'{reference}' if reference else '',
                f"{reference * 1000 / one['median_us']:.0f}×" if reference else '',
            ]
            print('| ' + ' | '.join(cells) + ' |')

if __name__ == '__main__':
    main(sys.argv[1:])
