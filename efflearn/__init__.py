"""EfficientNet training on fastai's Learner, fast and right: per-stage discriminative LRs, frozen BatchNorm, CUDA fast paths

Modules:

- `efflearn.callback.compile`: An opt-in `torch.compile` of the model for training, validation and prediction, one graph per image size, that never falls back to eager behind your back when progressive resizing changes the size.
- `efflearn.callback.guards`: Warn (or stop) when the training loss says the learning rate is too high, and stop at the first NaN or infinite loss before it reaches the weights or overwrites the last good saved model.
- `efflearn.data.datasets`: scikit-learn's handwritten digits and Fashion-MNIST (Debian's package) as image folders or tensors, so examples and tests train on real images with no download.
- `efflearn.learner`: A fastai `Learner` for any EfficientNet: pretrained body, new head, per-stage parameter groups, frozen BatchNorm while fine-tuning, ImageNet normalisation, and CUDA fast paths on by default.
- `efflearn.models.weights`: torchvision's ImageNet weights through its cache, or a local state dict file, loaded safely into an EfficientNet body with errors that say exactly what does not fit."""

__version__ = "0.0.1"
