"""Writes torchvision_state_dicts.json: the state-dict names and shapes of
torchvision's resnet18/34/50/101/152 (built on the meta device, so no weights
are made or downloaded). The tests check that the `.torchvision` variant of
ResNet.imagenet has exactly these names and shapes, so a state dict saved from
torchvision with the safetensors library loads into it.

    python3 Tests/Fixtures/make_torchvision_names.py
"""
import json
import os

import torch
import torchvision

out = {"source": f"torch {torch.__version__}, torchvision {torchvision.__version__}"}
for depth in (18, 34, 50, 101, 152):
    with torch.device("meta"):
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    out[f"resnet{depth}"] = [[name, list(t.shape)] for name, t in model.state_dict().items()]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchvision_state_dicts.json")
with open(path, "w") as f:
    json.dump(out, f, indent=0, sort_keys=True)
    f.write("\n")
print(path, {k: len(v) for k, v in out.items() if k != "source"})
