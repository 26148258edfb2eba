"""`make bench`: trace cost against the plain forward and a hand-written per-step loop, side by side.

Prints Markdown tables (paste them into benchmarks/RESULTS.md): the issue-7 configurations, the
CLI timings, and the long-sequence curve. Timings are medians of repeats measured in this one
process, alternating forward / trace / loop so that load from other work hits all columns alike;
peak memory is measured in a fresh subprocess per row (ru_maxrss cannot be reset in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.baseline import python_loop_trace  # noqa: E402
from lstmviz_cli.tracing.tracer import trace as traced  # noqa: E402


@dataclass(frozen=True)
class Config:
    """One benchmark row: a recurrent module and its input, batch-first."""

    label: str
    kind: str
    input_size: int
    hidden: int
    steps: int
    batch: int = 1
    layers: int = 1
    bidirectional: bool = False
    proj: int = 0

    def build(self) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        kw = {"num_layers": self.layers, "bidirectional": self.bidirectional, "batch_first": True}
        if self.proj:
            kw["proj_size"] = self.proj
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[self.kind]
        model = cls(self.input_size, self.hidden, **kw).eval()
        return model, torch.randn(self.batch, self.steps, self.input_size)


CONFIGS = [
    Config("(a) LSTM 128->512, T=2000, B=1", "lstm", 128, 512, 2000),
    Config("(b) LSTM 64->256, T=500, B=32", "lstm", 64, 256, 500, batch=32),
    Config("(c) LSTM 2L bi 64->256 proj128, T=1000", "lstm", 64, 256, 1000, layers=2,
           bidirectional=True, proj=128),
    Config("(d) GRU 128->512, T=2000, B=1", "gru", 128, 512, 2000),
    # Not in issue 7: a small model, where a per-step loop is dominated by Python overhead.
    Config("(e) LSTM 32->128, T=2000, B=1", "lstm", 32, 128, 2000),
]


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor) -> object:
    return model(x)


def _rebuild(model: nn.Module, x: torch.Tensor) -> object:
    """trace() through the fused kernel only (no oneDNN workspace): every gate rebuilt by the batched GEMM."""
    return traced(model, x, kernel="fused")


def _trace_bytes(tr) -> int:
    return sum(a.nbytes for lt in tr.layers for a in lt.series.values())


MEMORY_SCRIPT = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
from benchmarks.bench import Config
from benchmarks.peakrss import PeakRss
from lstmviz_cli import trace
torch.set_num_threads({threads})
cfg = Config(**json.loads(sys.argv[1]))
model, x = cfg.build()
with torch.no_grad():
    start = time.perf_counter()
    model(x)
    forward = time.perf_counter() - start
with PeakRss(0.002) as memory:
    start = time.perf_counter()
    tr = trace(model, x, store_dtype=sys.argv[2])
    seconds = time.perf_counter() - start
stored = sum(a.nbytes for lt in tr.layers for a in lt.series.values())
print(json.dumps({{"growth": memory.growth, "stored": stored, "seconds": seconds, "forward": forward,
                  "err": tr.verify_error}}))
"""


def measure_memory(cfg: Config, threads: int, dtype: str = "float32") -> dict:
    """Peak RSS during one trace minus RSS before it (sampled every 2 ms), in a fresh process."""
    script = MEMORY_SCRIPT.format(root=str(ROOT), threads=threads)
    fields = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(fields), dtype],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_configs(repeats: int, loop_repeats: int, threads: int) -> list[str]:
    rows = ["| config | forward ms | trace ms | trace/forward | rebuild-only ms | ratio | "
            "per-step loop ms | loop/forward | trace speed-up vs loop | peak trace memory | "
            "trace bytes | verify error |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for cfg in CONFIGS:
        model, x = cfg.build()
        _forward(model, x)  # warm-up: oneDNN primitive creation
        tr = traced(model, x)
        python_loop_trace(model, x)
        fwd, trc, rebuild, loop = [], [], [], []
        for r in range(repeats):
            fwd.append(_timed(_forward, model, x))
            trc.append(_timed(traced, model, x))
            rebuild.append(_timed(_rebuild, model, x))
            if r < loop_repeats:
                loop.append(_timed(python_loop_trace, model, x))
        mem = measure_memory(cfg, threads)
        f, t, rb, lp = (_median_ms(s) for s in (fwd, trc, rebuild, loop))
        rows.append(
            f"| {cfg.label} | {f:.0f} | {t:.0f} | **{t / f:.2f}** | {rb:.0f} | {rb / f:.2f} | "
            f"{lp:.0f} | {lp / f:.2f} | **{lp / t:.1f}x** | {mem['growth'] / 2**20:.0f} MiB | "
            f"{_trace_bytes(tr) / 2**20:.1f} MiB | {tr.verify_error:.1e} |")
        print(rows[-1], flush=True)
    return rows


def _cli_seconds(args: list[str], repeats: int, cwd: Path) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SAMPLE_MODELS = ["charlm.pt", "digitsum.pt", "sine.pt"]


def bench_cli(repeats: int) -> list[str]:
    """`lstmviz --help`, and `lstmviz report` per sample model against the import floor.

    Each round runs the floor, then every report with the default figure workers and with
    `--jobs 1`, so that load from elsewhere hits every column alike; medians over the rounds.
    """
    exe = Path(sys.executable).parent / "lstmviz"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lstmviz_cli"]
    rows = ["| command | median s | vs floor | with `--jobs 1` | vs floor | report size |",
            "|---|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    help_s = _cli_seconds([*cmd, "--help"], max(repeats, 5), ROOT)
    rows.append(f"| `lstmviz --help` | {help_s:.2f} | | | | |")
    print(rows[-1], flush=True)
    floor_cmd = [sys.executable, "-c", "import torch, matplotlib.pyplot"]
    models = [name for name in SAMPLE_MODELS if (ROOT / "sample_models" / name).exists()]
    times: dict[str, list[float]] = {"floor": []}
    failed: dict[str, str] = {}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            times["floor"].append(_cli_seconds(floor_cmd, 1, ROOT))
            for name in models:
                if name in failed:
                    continue
                out = Path(tmp) / f"{name}.html"
                for jobs in ("auto", "1"):
                    extra = [] if jobs == "auto" else ["--jobs", jobs]
                    try:
                        seconds = _cli_seconds([*cmd, "report", str(ROOT / "sample_models" / name), "-o", str(out),
                                                "--force", *extra], 1, ROOT)
                    except subprocess.CalledProcessError as exc:
                        reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                        failed[name] = reason[-1] if reason else f"exit {exc.returncode}"
                        print(f"note: lstmviz report {name} failed, skipped: {failed[name]}", flush=True)
                        break
                    times.setdefault(f"{name} {jobs}", []).append(seconds)
                    sizes[name] = out.stat().st_size / 2**20
    floor = statistics.median(times["floor"])
    rows.append(f"| `python -c \"import torch, matplotlib.pyplot\"` (floor) | {floor:.2f} | 1.00 | | | |")
    print(rows[-1], flush=True)
    for name in models:
        if name in failed:
            rows.append(f"| `lstmviz report {name}` | skipped ({failed[name][:60]}) | | | | |")
        else:
            auto = statistics.median(times[f"{name} auto"])
            serial = statistics.median(times[f"{name} 1"])
            rows.append(f"| `lstmviz report sample_models/{name}` | {auto:.2f} | **{auto / floor:.2f}** | "
                        f"{serial:.2f} | {serial / floor:.2f} | {sizes[name]:.2f} MiB |")
        print(rows[-1], flush=True)
    return rows


def bench_long(steps_list: list[int], threads: int) -> list[str]:
    """Time and peak memory of trace for one long sequence, hidden 1024, each in a fresh process."""
    rows = ["| T | store | forward s | trace s | trace/forward | trace s per 1k steps | "
            "peak trace memory | trace bytes | verify error |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for steps in steps_list:
        for dtype in ("float32", "float16") if steps == max(steps_list) else ("float32",):
            cfg = Config(f"T={steps}", "lstm", 32, 1024, steps)
            mem = measure_memory(cfg, threads, dtype)
            rows.append(f"| {steps:,} | {dtype} | {mem['forward']:.1f} | {mem['seconds']:.1f} | "
                        f"{mem['seconds'] / mem['forward']:.2f} | "
                        f"{mem['seconds'] / steps * 1e3:.2f} | {mem['growth'] / 2**30:.2f} GiB | "
                        f"{mem['stored'] / 2**30:.2f} GiB | {mem['err']:.1e} |")
            print(rows[-1], flush=True)
    return rows


def _peak_rss(pid: int, peaks: dict[int, int]) -> None:
    """Record VmHWM (peak RSS) of `pid` and of its children (the figure workers) into `peaks`."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for p in [pid, *map(int, children)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[p] = max(peaks.get(p, 0), int(line.split()[1]) * 1024)
            if p != pid:  # a forked worker shares the main process' pages: count what is its own
                private = sum(int(line.split()[1]) * 1024 for line in
                              Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
                              if line.startswith(("Private_Clean:", "Private_Dirty:")))
                peaks[-p] = max(peaks.get(-p, 0), private)
        except OSError:
            pass


def bench_long_report(steps_list: list[int]) -> list[str]:
    """`lstmviz report` end to end on LSTM 32->1024 over T steps: seconds, peak memory, page size."""
    rows = ["| T | report s | s per 1k steps | peak RSS, main process | peak private memory, largest figure worker | "
            "report size |", "|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    exe = Path(sys.executable).parent / "lstmviz"
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        torch.save(nn.LSTM(32, 1024, batch_first=True).state_dict(), Path(tmp) / "lstm1024.pt")
        for steps in steps_list:
            x = Path(tmp) / f"x{steps}.npy"
            np.save(x, np.random.default_rng(0).standard_normal((steps, 32)).astype(np.float32))
            out = Path(tmp) / f"r{steps}.html"
            start = time.perf_counter()
            proc = subprocess.Popen([str(exe), "report", str(Path(tmp) / "lstm1024.pt"), "--input", str(x),
                                     "-o", str(out), "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            peaks: dict[int, int] = {}
            while proc.poll() is None:
                _peak_rss(proc.pid, peaks)
                time.sleep(0.05)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                rows.append(f"| {steps:,} | failed: {proc.stderr.read().decode()[-80:]} | | | | |")
            else:
                main_peak = peaks.pop(proc.pid, 0)
                worker = max((v for k, v in peaks.items() if k < 0), default=0)
                rows.append(f"| {steps:,} | {seconds:.1f} | {seconds / steps * 1e3:.2f} | {main_peak / 2**30:.2f} GiB | "
                            f"{worker / 2**30:.2f} GiB | {out.stat().st_size / 2**20:.2f} MiB |")
            print(rows[-1], flush=True)
    return rows


CORPUS_SCRIPT = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {samples!r})
from data import generate_corpus
from benchmarks.peakrss import PeakRss
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.explain.corpus import batches, reduce_corpus
from lstmviz_cli.explain.significance import significance_steps
from lstmviz_cli.loading.checkpoint import load_checkpoint
from lstmviz_cli.loading.corpus import corpus_sample, open_corpus
from lstmviz_cli.tracing.sample import trace_sample
torch.set_num_threads({threads})
count, length, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
text = generate_corpus(count * (length + 10) + 1000, seed=7).replace(chr(10), " ")
with open(path, "w") as handle:
    handle.write(chr(10).join(text[k * length:(k + 1) * length] for k in range(count)) + chr(10))
del text
loaded = load_checkpoint({checkpoint!r})
corpus = open_corpus(loaded, path)
first = corpus_sample(corpus, loaded)
shown = trace_sample(loaded, first)
per_step = 4 * sum(l.series[k].shape[2] for l in shown.layers for k in l.series)
forward, corpus_s = [], []
for _ in range({repeats}):  # alternating, so that load from other work hits both alike
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches(corpus, first, per_step):
            loaded.model(torch.as_tensor(batch.values))
    forward.append(time.perf_counter() - start)
    with PeakRss(0.005) as memory:
        start = time.perf_counter()
        pooled, info = reduce_corpus(loaded, corpus, first, shown, Thresholds(), text_features=True,
                                     window_steps=significance_steps(8, 384))
        corpus_s.append(time.perf_counter() - start)
    growth = memory.growth
    del pooled
forward.sort(); corpus_s.sort()
print(json.dumps({{"forward": forward[len(forward) // 2], "corpus": corpus_s[len(corpus_s) // 2],
                  "growth": growth, "steps": info.steps, "batches": info.batches}}))
"""


def bench_corpus(counts: list[int], length: int, threads: int, repeats: int) -> list[str]:
    """Corpus mode on the char model (`explain.corpus.reduce_corpus`) against the plain forward over the
    same batches, and its peak memory, for corpora of `counts` sequences of `length` characters."""
    rows = ["| sequences x characters | plain forward s | corpus mode s | corpus / forward | peak memory growth | batches |",
            "|---|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    script = CORPUS_SCRIPT.format(root=str(ROOT), samples=str(ROOT / "sample_models"), threads=threads,
                                  checkpoint=str(ROOT / "sample_models" / "charlm.pt"), repeats=repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            done = subprocess.run([sys.executable, "-c", script, str(count), str(length), str(Path(tmp) / "c.txt")],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {count:,} x {length} | {r['forward']:.2f} | {r['corpus']:.2f} | "
                        f"{r['corpus'] / r['forward']:.2f} | {r['growth'] / 2**20:.0f} MiB | {r['batches']} |")
            print(rows[-1], flush=True)
    return rows


def describe_machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; torch {torch.__version__}, "
            f"{threads} torch thread(s); Python {platform.python_version()}; "
            f"load average at start {load:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable)")
    parser.add_argument("--long", default="1000,10000,100000",
                        help="long-sequence lengths (hidden 1024); '' to skip")
    parser.add_argument("--skip", default="",
                        help="comma list of parts to skip: configs,cli,long,report-long,corpus")
    parser.add_argument("--corpus", default="2500,10000", help="corpus sizes (sequences of 200 characters)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*projections is not supported with oneDNN.*")
    skip = set(filter(None, args.skip.split(",")))
    print(f"machine: {describe_machine(args.threads)}\n", flush=True)
    if "configs" not in skip:
        print("## trace against forward (CPU)\n", flush=True)
        bench_configs(args.repeats, args.loop_repeats, args.threads)
        print()
    if "cli" not in skip:
        print("## command line\n", flush=True)
        bench_cli(max(1, args.repeats // 2 + 1))
        print()
    if "long" not in skip and args.long:
        print("## long sequences (LSTM 32->1024, batch 1)\n", flush=True)
        steps = [int(s) for s in args.long.split(",") if s]
        bench_long(steps, args.threads)
        print()
    if "report-long" not in skip and args.long:
        print("## lstmviz report on long sequences (LSTM 32->1024, batch 1)\n", flush=True)
        bench_long_report([int(s) for s in args.long.split(",") if s])
        print()
    if "corpus" not in skip and args.corpus:
        print("## corpus mode on the char model (sequences of 200 characters)\n", flush=True)
        bench_corpus([int(s) for s in args.corpus.split(",") if s], 200, args.threads, max(1, args.repeats // 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
