"""torchvision's ResNets as references: `python resnet_reference.py DIR` writes, for depths 18
34 and 50, DIR/resnet{D}.pt (a plain dict state_dict with non-trivial BatchNorm statistics) and
DIR/resnet{D}_io.pt (an input batch and torchvision's eval-mode output for it)."""
import os
import sys

import torch
import torchvision

directory = sys.argv[1]
for depth in (18, 34, 50):
    torch.manual_seed(depth)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=29)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
    torch.save(dict(model.state_dict()), os.path.join(directory, f"resnet{depth}.pt"))
    torch.save({"x": x, "y": y}, os.path.join(directory, f"resnet{depth}_io.pt"))
