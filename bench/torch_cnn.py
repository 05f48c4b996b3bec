"""The baseline for bench/train.ts: medmesh's models in PyTorch, same data, same batch size.

- cnn (default): medmesh/cnn-small on the NPZ's 28x28 images;
- resnet18 SIZE: medmesh/resnet18 (7x7 stem with stride 2, 3x3 max pooling, four stages of two
  basic blocks with BatchNorm, global average pooling) on random SIZE x SIZE grayscale images, as
  bench/train.ts feeds it (the kernels' cost does not depend on the pixels).

Prints one JSON line: {"images_per_second": ..., "threads": ..., "torch": ...}.
Usage: python3 bench/torch_cnn.py NPZ_PATH STEPS BATCH THREADS [cnn | resnet18 SIZE]
"""
import json
import sys
import time

import numpy as np
import torch
from torch import nn

path, steps, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
arch = sys.argv[5] if len(sys.argv) > 5 else "cnn"
torch.set_num_threads(threads)
torch.manual_seed(0)
data = np.load(path)
x = torch.tensor(data["train_images"], dtype=torch.float32).unsqueeze(1) / 255.0
y = torch.tensor(data["train_labels"][:, 0], dtype=torch.long)



class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                               nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.a(x) + self.short(x))


if arch == "resnet18":
    size = int(sys.argv[6])
    x = torch.rand(max(4 * batch, 64), 1, size, size)
    y = torch.randint(0, 2, (x.shape[0],))
    layers = [nn.Conv2d(1, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512]):
        for block in range(2):
            layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 2))
else:
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


for i in range(1 if arch == "resnet18" else 3):
    step(i)
t0 = time.perf_counter()
for i in range(steps):
    step(i)
seconds = time.perf_counter() - t0
print(json.dumps({"images_per_second": steps * batch / seconds, "threads": threads, "torch": torch.__version__}))
