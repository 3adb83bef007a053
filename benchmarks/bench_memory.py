"""How much it costs to touch memory again after it sat idle (a property of the host, not of distspike).

Not a test: prints figures. On the development VM, memory that a process has not
touched for tens of milliseconds is slow to touch again (the host appears to reclaim
idle guest pages): every benchmark whose working set is revisited less often than that
pays for it, and the cost swings with the host's state. This script makes that visible:
it touches an array once, then re-reads one 56 KB slice of it after the process slept
for a gap, and reports the time per 4 KB page for the first and a second read.

``--bandwidth MB`` also reports the read bandwidth of one process streaming its own
array of that size, and of two such processes at once: whether two shards on two cores
can each read their weights as fast as one alone (the memory-bound forward pass).

``--shards N`` streams weight rows as the forward pass does (7,700 random rows of an
``N x N`` float32 matrix added into one vector per "sample"): one process holding all
columns against two processes holding half the columns each, at once. The second
figure over the first is the most 2 shards of a memory-bound layer can gain here.

``--same-block N,W`` streams rows of one ``N x W`` float32 block in one process alone,
then in two processes at once, each its own block of that shape (A B A B, per CPU
second of each process: a wait for a core shared with other processes does not count,
a stall on memory does). The second rate over the first is ``e2``, what the cost
model's memory-bandwidth share needs: how much slower a shard's work gets when a
second shard of its layer streams its own block beside it on the same machine, with
no change of block size (``--shards`` changes the block too, so it mixes a smaller
block's cache gain into the figure).

    python benchmarks/bench_memory.py [--gaps 0,0.001,0.01,0.1,0.5] [--repeats 5] [--bandwidth 800]
                                      [--shards 20000] [--same-block 20000,10000]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

PAGE = 4096
SLICE = 14 * PAGE  # bytes read per trial


def trial(a: np.ndarray, start: int, gap: float) -> tuple[float, float]:
    """(first, second) read of ``a[start:start+SLICE]`` after sleeping ``gap`` s, in µs per page."""
    if gap:
        time.sleep(gap)
    view = a[start:start + SLICE // a.itemsize]
    t0 = time.perf_counter()
    view.sum()
    t1 = time.perf_counter()
    view.sum()
    t2 = time.perf_counter()
    pages = SLICE / PAGE
    return (t1 - t0) * 1e6 / pages, (t2 - t1) * 1e6 / pages


def _stream(mb: int, reps: int, out) -> None:
    """(In a child process.) GB/s of ``reps`` sums over an own float32 array of ``mb`` MB, after one untimed sum."""
    a = np.ones(mb * 1_000_000 // 4, np.float32)
    a.sum()
    t0 = time.perf_counter()
    for _ in range(reps):
        a.sum()
    out.put(reps * a.nbytes / (time.perf_counter() - t0) / 1e9)


def bandwidth(mb: int, reps: int = 8) -> None:
    """Print the read bandwidth of one process, then of two at once, twice each."""
    print(f"\n| processes reading their own {mb} MB at once | GB/s each | GB/s together |")
    print("|---:|---|---:|")
    for n in (1, 2, 1, 2):
        out = mp.Queue()
        procs = [mp.Process(target=_stream, args=(mb, reps, out)) for _ in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        rates = [out.get() for _ in procs]
        print(f"| {n} | {' + '.join(f'{r:.1f}' for r in rates)} | {sum(rates):.1f} |")


def _rows(n: int, width: int, seed: int, seconds: float, out, cpu: bool = False) -> None:
    """(In a child process.) Samples/s of adding 7,700 random rows of an ``n x width`` float32 matrix
    (``cpu``: per second of this process's CPU time, which waits for a shared core do not count in)."""
    from numba import njit

    @njit(cache=False)
    def add_rows(W, idx, u):
        for k in range(idx.shape[0]):
            row = W[idx[k]]
            for j in range(u.shape[0]):
                u[j] += row[j]

    W = np.ones((n, width), np.float32)
    u = np.zeros(width, np.float32)
    rng = np.random.default_rng(seed)
    samples = [np.sort(rng.choice(n, min(7700, n), replace=False)) for _ in range(16)]
    add_rows(W, samples[0], u)
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        add_rows(W, samples[done % 16], u)
        done += 1
    out.put(done / ((time.process_time() - c0) if cpu else (time.perf_counter() - t0)))


def shard_rates(n: int, seconds: float = 5.0, cpu: bool = False) -> tuple[float, float]:
    """Samples/s of one process streaming all ``n`` columns, and of the slower of two streaming ``n/2`` each
    (``cpu``: per CPU second of each process, so that other processes sharing the cores do not count)."""
    rates = {}
    for procs in (1, 2):
        out = mp.Queue()
        ps = [mp.Process(target=_rows, args=(n, n // procs, k, seconds, out, cpu)) for k in range(procs)]
        for p in ps:
            p.start()
        got = [out.get() for _ in ps]
        for p in ps:
            p.join()
        rates[procs] = min(got)  # a sample waits for the slower shard
    return rates[1], rates[2]


def same_block_rates(n: int, width: int, seconds: float = 3.0, rounds: int = 2,
                     cpu: bool = True) -> list[tuple[float, float]]:
    """Per round (alone first, then two at once): samples/s of one process adding 7,700 random rows of its
    own ``n x width`` float32 block, and of the slower of two processes doing the same at once, each on
    its own block of the same shape (``cpu``: per CPU second of each process)."""
    out_rounds = []
    for r in range(rounds):
        rates = {}
        for procs in (1, 2):
            out = mp.Queue()
            ps = [mp.Process(target=_rows, args=(n, width, 100 * r + k, seconds, out, cpu)) for k in range(procs)]
            for p in ps:
                p.start()
            got = [out.get() for _ in ps]
            for p in ps:
                p.join()
            rates[procs] = min(got)  # a stage waits for its slower shard
        out_rounds.append((rates[1], rates[2]))
    return out_rounds


def same_block_e2(rounds: list[tuple[float, float]]) -> float:
    """``e2``: the median over rounds of (two at once) / (one alone), the same block in each process."""
    return float(np.median([r2 / r1 for r1, r2 in rounds]))


def same_block(n: int, width: int, seconds: float = 3.0, rounds: int = 2) -> None:
    """Print ``same_block_rates`` per round and ``e2``."""
    got = same_block_rates(n, width, seconds, rounds)
    print(f"\n| {n}x{width} float32 block per process, 7,700 rows per sample | samples per CPU s: alone | "
          "two at once (the slower) | ratio |")
    print("|---|---:|---:|---:|")
    for k, (r1, r2) in enumerate(got):
        print(f"| round {k + 1} | {r1:.2f} | {r2:.2f} | {r2 / r1:.2f} |")
    print(f"\ne2 = {same_block_e2(got):.3f} (median of the rounds' ratios)")


def shard_split(n: int, seconds: float = 5.0) -> None:
    """Print samples/s of one process streaming all ``n`` columns vs two streaming ``n/2`` each, twice."""
    print(f"\n| {n}x{n} float32 rows, 7,700 per sample | samples/s | vs 1 process |")
    print("|---|---|---:|")
    for _ in range(2):
        r1, r2 = shard_rates(n, seconds)
        print(f"| 1 process, all columns | {r1:.2f} | 1.00 |")
        print(f"| 2 processes, half the columns each (the slower) | {r2:.2f} | {r2 / r1:.2f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaps", default="0,0.001,0.01,0.1,0.5", help="idle gaps in seconds, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="trials per gap (each on a fresh slice)")
    parser.add_argument("--bandwidth", type=int, default=0, metavar="MB",
                        help="also measure the read bandwidth of 1 and 2 processes streaming MB each (0: skip)")
    parser.add_argument("--shards", type=int, default=0, metavar="N",
                        help="also stream rows of an N x N float32 matrix in 1 vs 2 processes (0: skip)")
    parser.add_argument("--same-block", default="", metavar="N,W",
                        help="also stream rows of an N x W float32 block alone vs two processes at once (each its own)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per --same-block measurement")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of --same-block")
    args = parser.parse_args(argv)
    if args.bandwidth < 0:
        parser.error(f"--bandwidth must be >= 0 MB, got {args.bandwidth}")
    if args.shards < 0 or args.shards == 1:
        parser.error(f"--shards must be 0 (skip) or at least 2 units, got {args.shards}")
    block = None
    if args.same_block:
        try:
            block = tuple(int(v) for v in args.same_block.split(","))
        except ValueError:
            block = ()
        if len(block) != 2 or min(block) < 1:
            parser.error(f"--same-block must be N,W with positive integers, got {args.same_block!r}")
        if args.seconds <= 0 or args.rounds < 1:
            parser.error(f"--seconds must be > 0 and --rounds >= 1, got {args.seconds} and {args.rounds}")
        if args.gaps == parser.get_default("gaps"):  # only the block asked for: skip the idle-page probe
            same_block(*block, args.seconds, args.rounds)
            return
    gaps = [float(g) for g in args.gaps.split(",")]
    a = np.ones(len(gaps) * args.repeats * SLICE // 8 + SLICE, np.int64)  # touched once, here
    print("| idle gap (s) | first read, µs per 4 KB page (median, max) | second read (median) |")
    print("|---:|---:|---:|")
    k = 0
    for gap in gaps:
        first, second = [], []
        for _ in range(args.repeats):
            f, s = trial(a, k * SLICE // 8, gap)
            first.append(f)
            second.append(s)
            k += 1
        print(f"| {gap:g} | {np.median(first):.2f}, {max(first):.2f} | {np.median(second):.2f} |")
    if args.bandwidth:
        bandwidth(args.bandwidth)
    if args.shards:
        shard_split(args.shards)
    if block:
        same_block(*block, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
