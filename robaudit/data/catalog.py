"""Static facts about the datasets robaudit knows by name (no file is read).

Means and standard deviations are the conventional per-channel values of each
dataset's training images, in [0, 1] pixel units, as commonly used to train models on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from robaudit.data.digits import DIGITS_MEAN, DIGITS_STD

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

MNIST_CLASSES = [
    "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
    "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine",
]  # fmt: skip

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

DIGIT_CLASSES = [str(i) for i in range(10)]


@dataclass(frozen=True)
class DatasetSpec:
    """Fixed facts about a dataset known by name.

    Attributes:
        name: canonical name (``cifar10`` …).
        title: human-readable name for messages (``CIFAR-10`` …).
        num_classes: K.
        channels: C of the stored images.
        image_size: (H, W) of the stored images, in pixels.
        mean, std: conventional per-channel normalisation in [0, 1] units.
        class_names: the K class names.
    """

    name: str
    title: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


NAMED_DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR-10", 10, 3, (32, 32),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), tuple(CIFAR10_CLASSES),
    ),
    "cifar100": DatasetSpec(
        "cifar100", "CIFAR-100", 100, 3, (32, 32),
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), tuple(CIFAR100_CLASSES),
    ),
    "mnist": DatasetSpec("mnist", "MNIST", 10, 1, (28, 28), (0.1307,), (0.3081,), tuple(MNIST_CLASSES)),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "Fashion-MNIST", 10, 1, (28, 28), (0.2860,), (0.3530,), tuple(FASHION_MNIST_CLASSES),
    ),
    "svhn": DatasetSpec(
        "svhn", "SVHN", 10, 3, (32, 32),
        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), tuple(DIGIT_CLASSES),
    ),
}  # fmt: skip
"""The datasets read through torchvision, by canonical name."""

DIGITS_SPEC = DatasetSpec("digits", "digits", 10, 1, (8, 8), DIGITS_MEAN, DIGITS_STD, tuple(DIGIT_CLASSES))
"""scikit-learn's bundled 8×8 digits (see :mod:`robaudit.data.digits`)."""
