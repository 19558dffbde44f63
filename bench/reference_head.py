"""Train a linear head on embedding .npy files with PyTorch, with plain cross-entropy or the
reference `difftopk` loss (Adam, batch B, E epochs, one thread), and print one JSON line:
training seconds (training loop only, data already in memory) and test top-1..top-5.

The reference's sparse networks need `torch_sparse.spmm`; when it is missing, a stand-in with the
same semantics (index_select + index_add, what torch_sparse does on CPU) is registered.
Usage: python bench/reference_head.py DATA_DIR ce|topk EPOCHS BATCH LR
"""
import json
import sys
import time
import types

import numpy as np
import torch

try:
    import torch_sparse  # noqa: F401
except Exception:
    stand_in = types.ModuleType("torch_sparse")

    def spmm(index, value, m, n, matrix):
        contribution = matrix.index_select(0, index[1]) * value.unsqueeze(-1)
        out = torch.zeros(m, matrix.shape[1], dtype=contribution.dtype)
        return out.index_add_(0, index[0], contribution)

    stand_in.spmm = spmm
    sys.modules["torch_sparse"] = stand_in

import difftopk  # noqa: E402

data, loss_name, epochs, batch, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(1)
torch.manual_seed(0)
x_train = torch.from_numpy(np.load(f"{data}/X_train.npy").astype(np.float32))
y_train = torch.from_numpy(np.load(f"{data}/y_train.npy").astype(np.int64))
x_test = torch.from_numpy(np.load(f"{data}/X_test.npy").astype(np.float32))
y_test = torch.from_numpy(np.load(f"{data}/y_test.npy").astype(np.int64))
classes = int(max(y_train.max(), y_test.max())) + 1
head = torch.nn.Linear(x_train.shape[1], classes)
optimiser = torch.optim.Adam(head.parameters(), lr=lr)
if loss_name == "ce":
    criterion = torch.nn.CrossEntropyLoss()
else:
    criterion = difftopk.TopKCrossEntropyLoss(
        diffsort_method="splitter_selection", inverse_temperature=1.0, p_k=[0.5, 0, 0, 0, 0.5],
        n=classes, m=16, distribution="logistic_phi", art_lambda=0.5, top1_mode="sm", device="cpu",
    )
started = time.perf_counter()
for epoch in range(epochs):
    order = torch.randperm(len(y_train))
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        optimiser.zero_grad()
        loss = criterion(head(x_train[rows]), y_train[rows])
        loss.backward()
        optimiser.step()
seconds = time.perf_counter() - started
with torch.no_grad():
    scores = head(x_test)
    ranks = (scores > scores.gather(1, y_test[:, None])).sum(1)
print(json.dumps({"loss": loss_name, "seconds": seconds,
                  **{f"top{k}": float((ranks < k).float().mean()) for k in range(1, 6)}}))
