"""The baseline for bench/train.ts: medmesh's cnn-small in PyTorch, same data, same batch size.

Prints one JSON line: {"images_per_second": ..., "threads": ..., "torch": ...}.
Usage: python3 bench/torch_cnn.py NPZ_PATH STEPS BATCH THREADS
"""
import json
import sys
import time

import numpy as np
import torch
from torch import nn

path, steps, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
data = np.load(path)
x = torch.tensor(data["train_images"], dtype=torch.float32).unsqueeze(1) / 255.0
y = torch.tensor(data["train_labels"][:, 0], dtype=torch.long)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
    nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 2),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()


def step(i):
    idx = torch.randint(0, x.shape[0], (batch,))
    opt.zero_grad()
    loss = loss_fn(model(x[idx]), y[idx])
    loss.backward()
    opt.step()


for i in range(3):
    step(i)
t0 = time.perf_counter()
for i in range(steps):
    step(i)
seconds = time.perf_counter() - t0
print(json.dumps({"images_per_second": steps * batch / seconds, "threads": threads, "torch": torch.__version__}))
