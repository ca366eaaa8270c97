"""secml's MNIST tutorial CNN and its DNR settings: shared by benchmarks/dnr.py and its secml runner.

Only torch is imported here, so that the runner can load it in secml's own environment.
"""

from collections import OrderedDict

from torch import nn

# DNR layers of the tutorial with their one-vs-all RBF SVM (C, gamma), and the combiner's.
LAYERS = OrderedDict(
    [("features.relu2", (10.0, 1e-3)), ("features.relu3", (10.0, 1e-2)), ("features.relu4", (1.0, 1e-2))]
)
COMBINER = (0.1, 1.0)
INPUT_SHAPE = (1, 28, 28)


class SeedCNN(nn.Module):
    """conv(1,32,3)-relu-conv(32,32,3)-relu2-pool-conv(32,64,3)-relu3-conv(64,64,3)-relu4-pool-fc200-fc200-fc10."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 32, 3), relu1=nn.ReLU(), conv2=nn.Conv2d(32, 32, 3), relu2=nn.ReLU(),
                pool1=nn.MaxPool2d(2), conv3=nn.Conv2d(32, 64, 3), relu3=nn.ReLU(), conv4=nn.Conv2d(64, 64, 3),
                relu4=nn.ReLU(), pool2=nn.MaxPool2d(2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(1024, 200), relu1=nn.ReLU(), fc2=nn.Linear(200, 200), relu2=nn.ReLU(),
                fc3=nn.Linear(200, n_classes),
            )
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
