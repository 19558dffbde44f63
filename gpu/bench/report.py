#!/usr/bin/env python3
"""Joins the JSON lines of `bench_gpu` (ours) and `reference_gpu.py` (PyTorch) into a Markdown
table: per configuration our fused kernel (with m also its one-thread-per-row variant), the
reference, the speed-up, and our time against a
device-to-device copy of the logits (the memory-bandwidth floor), all measured on one device.

    python3 gpu/bench/report.py OURS.jsonl REFERENCE.jsonl
"""
import json
import sys


def records(path):
    out = []
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line.startswith('{'):  # the reference prints a few lines of its own
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    out.append({'unreadable': line[:200]})
    return out


def main():
    ours = records(sys.argv[1])
    reference = {(r['method'], r['n'], r['m'], r['batch']): r for r in records(sys.argv[2])}
    print('| method | n | m | batch | ours µs | ours / copy | fused warp / select then thread / thread per row / warp sweep µs | our CE µs | PyTorch ms | PyTorch CE ms | speed-up |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for r in ours:
        if 'method' not in r:
            print(f"| {json.dumps(r)[:200]} |")
            continue
        key = (r['method'], r['n'], r['m'], r['batch'])
        ref = reference.get(key, {})
        ce = reference.get(('cross_entropy', r['n'], None, r['batch']), {})
        m = 'all' if r['m'] is None else r['m']
        if 'median_us' not in r:
            print(f"| {r['method']} | {r['n']} | {m} | {r['batch']} | {r.get('skipped') or r.get('failed')} | | | | | | |")
            continue
        ref_ms = ref.get('median_ms')
        speedup = f"{ref_ms * 1000 / r['median_us']:.0f}×" if ref_ms else ref.get('failed', 'n/a')
        ref_text = f"{ref_ms:.3f}" if ref_ms else 'n/a'
        ce_text = f"{ce['median_ms']:.3f}" if 'median_ms' in ce else 'n/a'
        thread = ' / '.join(f"{r[key]:.1f}" for key in
                            ('fused_warp_us', 'select_then_thread_us', 'thread_per_row_us',
                             'warp_sweep_us')
                            if key in r)
        print(f"| {r['method']} | {r['n']} | {m} | {r['batch']} | {r['median_us']:.1f} | "
              f"{r['ratio_to_copy']:.2f} | {thread} | {r['softmax_ce_us']:.1f} | {ref_text} | "
              f"{ce_text} | {speedup} |")


if __name__ == '__main__':
    main()
