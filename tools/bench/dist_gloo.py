"""The PyTorch side of `spear bench dist`: torch.distributed's gloo backend summing float32
buckets between N processes on 127.0.0.1, timed as spear times its own all-reduce (a barrier,
then one all_reduce of the bucket; the median of the timed rounds after one warm-up).

    python tools/bench/dist_gloo.py --processes 2 --mib 4,64,256 --repeats 5 --port 29600

Prints one line per size: `MIB SECONDS`. Environment: tools/bench/requirements-dist.txt.
"""

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, args, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.processes)
    for mib in args.mib:
        tensor = torch.ones(int(mib * (1 << 20) / 4), dtype=torch.float32)
        times = []
        for round_ in range(args.repeats + 1):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            if round_ > 0:
                times.append(time.perf_counter() - start)
        if rank == 0:
            queue.put((mib, statistics.median(times)))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--mib", type=lambda s: [float(x) for x in s.split(",")], required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.spawn(worker, args=(args, queue), nprocs=args.processes, join=True)
    for _ in args.mib:
        mib, seconds = queue.get()
        print(f"{mib:g} {seconds}", flush=True)


if __name__ == "__main__":
    main()
