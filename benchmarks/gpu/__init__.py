"""The GPU benchmark: ResNet-18 on CIFAR-10 at the published width (64, ~11.2 M parameters) with the
CIFAR-10 recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, linear decay), on the
engine's own code, in one short run:

1. Training throughput and update-log overhead: plain training, with the dense log, with the pruned
   log (top 10% per tensor; epoch 0 also records the per-sample gradients of ``fc``, later epochs
   do not: both are measured), plain with bf16 autocast (the recipe's ``precision``), and plain in
   the other CUDA mode (deterministic, the worker's default, or fast): wall time (synchronised),
   images/s, peak GPU memory, each log's ratio to plain against the targets (dense <= 1.5x,
   pruned <= 1.3x).
2. CPU vs CUDA: the same training step code on the CPU (torch on the machine's cores).
3. Forgetting on the GPU: the forgetting benchmark's Experiment, gate and auto loop
   (benchmarks/forgetting) on a GPU profile; every method at its defaults, ``auto`` and first-epoch
   gradient ascent against ``retrain``: seconds, speed-up, the gate's verdict and the time to a
   verified erasure, on the same GPU.

What is cut to fit one device call of about 8 minutes (the output says so too): the training rows
run 128 steps (16,384 images, a third of an epoch; two chunks of 64 steps) rather than whole
epochs, since a dense-log epoch writes 17.5 GB; the forgetting part trains 3 epochs, one seed, two
of the five scenarios (one class; 1% at random), no documented variants, and no dense log (so no
``amnesiac`` row); the CPU comparison runs 20 steps. Every part has a deadline within
``--budget-s``: a row not started by its part's deadline is left out and listed, and the result
files are rewritten after every part and scenario, so a run stopped by its time limit keeps what
finished.

python -m benchmarks.gpu --data .gpudata/cifar10-jpeg.npz --device cuda --out "$OUT"
python -m benchmarks.gpu --quick --out /tmp/gpu-quick   # digits, width 4, on the CPU: the same code in ~1 min

Writes ``gpu-cifar10.md`` / ``.json`` (``gpu-digits-quick.*`` with --quick) and the forgetting
benchmark's full tables ``forgetting-cifar10-gpu.md`` / ``.json`` / ``.png``. benchmarks/gpu/run.sh
runs it on a GPU machine with the CUDA tests.
"""
