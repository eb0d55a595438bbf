"""Reference side of the DDP parity test, run with the venv's torch (the same version as our LibTorch).

  python ddp_reference.py prepare DIR   initial weights (a plain dict, BatchNorm included), data,
                                        and DistributedSampler indices for a few cases
  torchrun --nproc-per-node 2 ddp_reference.py train DIR
                                        torch.nn.parallel.DistributedDataParallel over Gloo on the
                                        CPU; rank 0 saves the final state as DIR/python_final.pt
"""
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

SEED, EPOCHS, BATCH, LR, MOMENTUM = 3, 3, 8, 0.2, 0.9
SAMPLER_CASES = [(10, 4, 0), (10, 4, 1), (23, 3, 7), (96, 2, 3), (5, 8, 1)]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


def prepare(directory):
    torch.manual_seed(0)
    model = Net()
    torch.save(dict(model.state_dict()), os.path.join(directory, "init.pt"))
    # The same weights as the OrderedDict that state_dict() returns (LibTorch 1.13 could not read it).
    torch.save(model.state_dict(), os.path.join(directory, "init_ordered.pt"))
    x = torch.randn(96, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    torch.save({"x": x, "y": y}, os.path.join(directory, "data.pt"))
    with open(os.path.join(directory, "sampler.txt"), "w") as out:
        for size, world, seed in SAMPLER_CASES:
            for epoch in (0, 1, 5):
                for drop_last in (False, True):
                    for rank in range(world):
                        sampler = DistributedSampler(range(size), num_replicas=world, rank=rank,
                                                     shuffle=True, seed=seed, drop_last=drop_last)
                        sampler.set_epoch(epoch)
                        indices = " ".join(str(i) for i in sampler)
                        out.write(f"{size} {world} {rank} {seed} {epoch} {int(drop_last)} : {indices}\n")


def train(directory):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = Net()
    model.load_state_dict(torch.load(os.path.join(directory, "init.pt")))
    data = torch.load(os.path.join(directory, "data.pt"))
    dataset = TensorDataset(data["x"], data["y"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=SEED)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
            optimizer.step()
    if rank == 0:
        torch.save(dict(model.state_dict()), os.path.join(directory, "python_final.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    {"prepare": prepare, "train": train}[sys.argv[1]](sys.argv[2])
