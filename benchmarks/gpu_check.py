"""End-to-end check of the CUDA path: train, morph, check function preservation, fine-tune, search.

Run ``python benchmarks/gpu_check.py`` (from the repository root). Prints one ``PASS`` / ``FAIL``
line per check and exits 1 if any failed; on a machine without CUDA it prints
``no CUDA: skipped`` and exits 0.

Checks:
  1. a chain net trains a few epochs on digits on cuda (bf16 autocast, channels-last weights);
  2. a morphed child (widen + deepen + enlarge kernel) computes the parent's function on the GPU:
     fp32 eval with TF32 off within 1e-4, with TF32 on and under bf16 autocast within
     bf16-appropriate tolerances, and the same predictions;
  3. the child fine-tunes on cuda from the inherited weights (``finetune_epochs``);
  4. a 3-trial ``nasw search --strategy hillclimb --device cuda`` against a temporary SQLite
     store (memory:// where mlflow is not installed), whose children inherit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS: list[tuple[str, bool, str]] = []


def report(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu dry-runs the same steps")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA: skipped (the CUDA path needs a GPU; CPU tests cover the rest)")
        return 0
    cuda = args.device.startswith("cuda")
    from workbench.data.base import load_splits
    from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator
    from workbench.morph.lineage import morph_child
    from workbench.space.chain import ChainSpace
    from workbench.space.edits import MorphismStep
    from workbench.space.morphs import apply_steps

    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu'}, torch {torch.__version__}", flush=True)
    splits = load_splits("digits")
    space = ChainSpace(max_layers=5, kernels=[3, 5], widths=[16, 32, 64], dense_widths=[64, 128])
    parent_g = space.make(
        [
            {"op": "conv", "kernel": 3, "width": 16, "act": "relu"},
            {"op": "maxpool"},
            {"op": "dense", "width": 64, "act": "relu"},
        ]
    )
    cfg = TrainConfig(epochs=6, batch_size=64, lr=3e-3, device=args.device, finetune_epochs=2)
    ev = TrainedEvaluator(splits, cfg)

    # 1. train on cuda: bf16 autocast + channels-last
    model = ev.build(parent_g, seed=0)
    t0 = time.perf_counter()
    res = ev.train(model, cfg, seed=0)
    conv_w = model.features[0][0].weight
    channels_last = conv_w.is_contiguous(memory_format=torch.channels_last)
    ok = res.metrics["val_accuracy"] > 0.85 and (channels_last and conv_w.is_cuda or not cuda)
    report(
        "train on cuda (bf16, channels-last)",
        ok,
        f"val {res.metrics['val_accuracy']:.3f}, test {res.metrics['test_accuracy']:.3f}, "
        f"{time.perf_counter() - t0:.1f}s, weights on {conv_w.device} channels_last={channels_last}",
    )

    # 2. morph and check function preservation on the GPU
    steps = (
        MorphismStep.make("widen", (0,), width=32),
        MorphismStep.make("deepen", (1,), layer="conv", width=32, kernel=3),
        MorphismStep.make("enlarge_kernel", (1,), kernel=5),
        MorphismStep.make("widen", (3,), width=128),
    )
    child_g, child_state = morph_child(parent_g, res.state_dict, steps, splits.input_shape, splits.n_classes)
    assert child_g == apply_steps(parent_g, steps)
    space.validate(child_g)
    dev = torch.device(args.device)
    parent = ev.build(parent_g, 0)
    parent.load_state_dict(res.state_dict)
    child = ev.build(child_g, 1)
    child.load_state_dict(child_state)
    parent = parent.to(dev, memory_format=torch.channels_last).eval()
    child = child.to(dev, memory_format=torch.channels_last).eval()
    x = torch.from_numpy(splits.x_val).to(dev).contiguous(memory_format=torch.channels_last)
    old_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            a, b = parent(x), child(x)
        scale = float(a.abs().max())
        err32 = float((a - b).abs().max())
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with torch.no_grad():
            a_t, b_t = parent(x), child(x)
            err_tf32 = float((a_t - b_t).abs().max())
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                a16, b16 = parent(x).float(), child(x).float()
        err16 = float((a16 - b16).abs().max())
        agree = float((a16.argmax(1) == b16.argmax(1)).float().mean())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_tf32
    ok = (
        err32 <= 1e-4 * max(1.0, scale)
        and err_tf32 <= 1e-2 * max(1.0, scale)
        and err16 <= 0.1 * max(1.0, scale)
        and agree >= 0.98
    )
    report(
        "morphed child == parent on cuda",
        ok,
        f"{len(steps)} steps; max |logit| {scale:.2f}; fp32 err {err32:.2e}, tf32 err {err_tf32:.2e}, "
        f"bf16 err {err16:.2e}, bf16 argmax agreement {agree:.3f}",
    )

    # 3. fine-tune the child on cuda from the inherited weights
    t0 = time.perf_counter()
    fin = ev.evaluate(child_g, seed=1, init_state=child_state)
    ok = (
        fin.metrics["epochs"] == 2
        and not fin.notes
        and fin.metrics["val_accuracy"] >= res.metrics["val_accuracy"] - 0.03
    )
    report(
        "fine-tune child on cuda",
        ok,
        f"{int(fin.metrics['epochs'])} epochs, val {fin.metrics['val_accuracy']:.3f} "
        f"(parent {res.metrics['val_accuracy']:.3f}), {time.perf_counter() - t0:.1f}s, notes {fin.notes or 'none'}",
    )

    # 4. a 3-trial hill-climbing search from the command line on cuda
    with tempfile.TemporaryDirectory(prefix="nasw-gpu-") as tmp:
        task = Path(tmp) / "gpu-digits.toml"
        task.write_text(
            'name = "gpu-digits"\ndescription = "digits on cuda (gpu_check)"\nkind = "trained"\n'
            '[dataset]\nloader = "digits"\n[split]\nseed = 0\n'
            '[space]\nkind = "chain"\nmax_layers = 4\nkernels = [3, 5]\nwidths = [16, 32]\ndense_widths = [64]\n'
            "[training]\nepochs = 4\nbatch_size = 64\nfinetune_epochs = 2\n"
        )
        try:
            import mlflow  # noqa: F401

            store = f"sqlite:///{tmp}/mlflow.db"
        except ImportError:
            store = "memory://"
            print("note: mlflow is not installed here; the search uses a memory:// store", flush=True)
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        cmd = [
            sys.executable,
            "-m",
            "workbench.cli",
            "search",
            "--task",
            str(task),
            "--strategy",
            "hillclimb",
            "--budget",
            "3",
            "--device",
            args.device,
            "--store",
            store,
            "--json",
            "--quiet",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=600)
        seconds = time.perf_counter() - t0
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            report("nasw search --device cuda", False, f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
        else:
            ok = proc.returncode == 0 and out["n_trials"] == 3 and out["n_failed"] == 0
            detail = f"{out['n_trials']} trials, {out['n_failed']} failed, best val {out['best']['metrics']['val_accuracy']:.3f}, {seconds:.1f}s, store {store.split(':')[0]}"
            if ok and store.startswith("sqlite"):
                lin = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "workbench.cli",
                        "lineage",
                        out["best"]["trial_id"],
                        "--store",
                        store,
                        "--format",
                        "json",
                    ],
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                    env=env,
                    timeout=300,
                )
                gens = json.loads(lin.stdout)["ancestors"] if lin.returncode == 0 else []
                detail += f", best trial has {len(gens)} generation(s)"
                ok = ok and lin.returncode == 0
            report("nasw search --device cuda", ok, detail)
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
