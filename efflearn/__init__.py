"""EfficientNet training on fastai's Learner, fast and right: per-stage discriminative LRs, frozen BatchNorm, CUDA fast paths

Modules:

- `efflearn.compile`: An opt-in `torch.compile` of the model for training, validation and prediction, one graph per image size, that never falls back to eager behind your back when progressive resizing changes the size.
- `efflearn.data`: scikit-learn's handwritten digits written out as an image folder, so examples and tests train on real images with no download.
- `efflearn.guards`: Warn (or stop) when the training loss says the learning rate is too high, and stop at the first NaN or infinite loss before it reaches the weights or overwrites the last good saved model.
- `efflearn.learner`: A fastai `Learner` for any EfficientNet: pretrained body, new head, per-stage parameter groups, frozen BatchNorm while fine-tuning, ImageNet normalisation, and CUDA fast paths on by default.
- `efflearn.weights`: torchvision's ImageNet weights through its cache, or a local state dict file, loaded safely into an EfficientNet body with errors that say exactly what does not fit."""

__version__ = "0.0.1"
