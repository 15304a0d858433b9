"""ResNet-18 in the CIFAR style (He et al. 2016): 3x3 stem, no max-pool, four stages of two blocks.
Config and layout: catalog.py."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from workers.engine.architectures.base import image_shape
from workers.engine.architectures.catalog import ResNet18Config
from workers.engine.architectures.modules import ToImage


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, shape: tuple[int, int, int], num_classes: int, width: int):
        super().__init__()
        self.to_image = ToImage(shape)
        self.conv1 = nn.Conv2d(shape[0], width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.to_image(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def build_resnet18(config: ResNet18Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return ResNet18(image_shape(input_shape, "resnet18"), num_classes, config.width)
