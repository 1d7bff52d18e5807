"""Photo-folder speed: first look, the one decode pass, the single-threaded references, open -> first batch.

    python bench/photo_folder.py /tmp/photo-2000 --photos 2000
    python bench/photo_speed.py /tmp/photo-2000 [--workers N] [--reference-files 0] [--model cifar-classic]

Reports in one run (warm page cache: the folder was just written or read):
- first look files/s (listing + headers + end markers, ``scan --quick``),
- deep check + cache pass files/s (every file read, hashed, decoded once, written to the cache),
- single-threaded references on the same files (``--reference-files N``: a random sample of N):
  Pillow full decode, and
  Pillow ``draft`` decode to 224 px (JPEG; other formats decode at full size either way),
  and simplejpeg's scaled decode when it is installed,
- open -> first training batch: a fresh cache, the app's scan (first look + deep check), then
  ``train`` until its first batch; then the same for a second model (nothing left to decode),
- peak memory (max RSS of this process and of its largest worker process),
- the extrapolated time to a complete class table for 50,000 photos.

Memory flatness: run it on folders of 2,000 and 8,000 photos (``photo_folder.py --megapixels 1``
for the larger one keeps the disk use small; per-file memory does not depend on the file size)
and compare ``peak_rss_minus_cache_mb`` (the mapped cache is read whole, so its pages count in
RSS). ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time


def scratch(prefix: str) -> str:
    """A temporary folder removed when the bench exits (decoded caches of photos take gigabytes)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


if "BALANCELAB_HOME" not in os.environ:
    os.environ["BALANCELAB_HOME"] = scratch("photo-speed-home-")

from PIL import Image  # noqa: E402

from balancelab.engine.core.events import Finished  # noqa: E402
from balancelab.engine.data.canonical import load_canonical  # noqa: E402
from balancelab.engine.data.scanner import FirstLook, scan  # noqa: E402


def _files(root: str) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.join(dirpath, n) for n in names if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    return sorted(out)


def reference_rates(files: list[str], n: int, seed: int = 0) -> dict:
    """Single-threaded Pillow full decode and draft decode (files/s) on the same random sample."""
    sample = random.Random(seed).sample(files, min(n, len(files))) if n > 0 else files
    out = {}
    for name, draft in (("pillow_full", False), ("pillow_draft_224", True)):
        start, ok = time.perf_counter(), 0
        for p in sample:
            try:
                with Image.open(p) as im:
                    if draft and im.format == "JPEG":
                        im.draft("RGB", (224, 224))
                    im.load()
                ok += 1
            except Exception:  # the planted problem files
                pass
        out[name] = ok / (time.perf_counter() - start)
    try:
        import simplejpeg
    except ImportError:
        return out
    jpegs = [p for p in sample if p.lower().endswith(".jpg")]
    start, ok = time.perf_counter(), 0
    for p in jpegs:
        try:
            simplejpeg.decode_jpeg(open(p, "rb").read(), min_height=224, min_width=224)
            ok += 1
        except Exception:
            pass
    out["simplejpeg_scaled_224_jpeg_only"] = ok / max(1e-9, time.perf_counter() - start)
    return out


def timed_scan(root: str, workers: int | None) -> dict:
    start = time.perf_counter()
    first_at = None
    result = None
    for ev in scan(root, workers=workers):
        if isinstance(ev, FirstLook):
            first_at = time.perf_counter()
            n_first = len(ev.result.images) + sum(p.kind not in ("empty-class", "class-mismatch") for p in ev.result.problems)
        elif isinstance(ev, Finished):
            result = ev.result
    end = time.perf_counter()
    return {"first_look_s": first_at - start, "files": n_first, "deep_s": end - first_at, "result": result}


def open_to_first_batch(root: str, model: str, workers: int | None) -> float:
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train
    from balancelab.engine.train.run_events import BatchProgress

    start = time.perf_counter()
    result = None
    for ev in scan(root, workers=workers):  # opening the folder in the app
        if isinstance(ev, Finished):
            result = ev.result
    out = scratch("photo-speed-run-")
    cfg = TrainConfig(data=root, out=out, model=model, epochs=1, batch_size=64, workers=workers or 0)
    gen = train(cfg, scan_result=result)
    for ev in gen:
        if isinstance(ev, BatchProgress) or isinstance(ev, Finished):
            break
    gen.close()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--reference-files", type=int, default=0,
                    help="files in the single-thread reference sample; 0 = all (the files the deep pass decodes)")
    ap.add_argument("--model", default="cifar-classic")
    ap.add_argument("--second-model", default="alexnet-style")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = _files(args.root)
    quick_start = time.perf_counter()
    for ev in scan(args.root, workers=args.workers, deep=False):
        pass
    quick_s = time.perf_counter() - quick_start
    timing = timed_scan(args.root, args.workers)
    refs = reference_rates(files, args.reference_files)
    n = len(files)
    deep_rate = timing["files"] / timing["deep_s"]
    report = {
        "files": n,
        "cores": os.cpu_count(),
        "first_look_files_per_s": n / quick_s,
        "first_look_in_full_scan_files_per_s": timing["files"] / timing["first_look_s"],
        "deep_check_and_cache_files_per_s": deep_rate,
        **{f"single_thread_{k}_files_per_s": v for k, v in refs.items()},
        "deep_over_single_thread_draft": deep_rate / refs["pillow_draft_224"],
        "problems": sorted({(p.path, p.kind) for p in timing["result"].problems}),
    }
    cache_home = os.environ["BALANCELAB_HOME"]
    os.environ["BALANCELAB_HOME"] = scratch("photo-speed-cold-")  # nothing decoded yet
    report["open_to_first_batch_s"] = open_to_first_batch(args.root, args.model, args.workers)
    report["second_model_open_to_first_batch_s"] = open_to_first_batch(args.root, args.second_model, args.workers)
    os.environ["BALANCELAB_HOME"] = cache_home
    report["extrapolated_50k_class_table_s"] = 50_000 / report["first_look_files_per_s"]
    report["extrapolated_50k_deep_pass_min"] = 50_000 / deep_rate / 60
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    canon = load_canonical(args.root)  # the memory-mapped cache: its pages count in RSS once read
    report["cache_mb"] = canon.array.nbytes / 1024**2 if canon is not None else 0.0
    report["peak_rss_minus_cache_mb"] = report["peak_rss_mb"] - report["cache_mb"]
    report["peak_worker_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if key != "problems":
            print(f"{key:45s} {value:12.2f}" if isinstance(value, float) else f"{key:45s} {value}")
    print("problems:", ", ".join(f"{p} ({k})" for p, k in report["problems"]) or "none", file=sys.stdout)


if __name__ == "__main__":
    main()
