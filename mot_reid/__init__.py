"""mot-reid: person re-identification (Bag of Tricks) and DeepSORT-style tracking."""

__version__ = "0.1.0"
