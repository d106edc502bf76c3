"""The app configuration: the model's plan plus the run-time settings, parsed once from ``--conf``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lib.config.plan import ModelPlan

AUTO = "auto"
TRACKING = ("none", "mlflow")
AMP_CHOICES = ("auto", "on", "off")  # mixed precision of the forward pass (lib.networks.precision)
AUGMENTATION_CHOICES = ("flips", "spatial")  # training augmentation beyond intensity jitter
TTA_CHOICES = ("off", "mirror")  # test-time augmentation of auto segmentation
AUTH_CHOICES = ("auto", "off")  # login: on when --conf users is given; "off" to serve a network without it


@dataclass(frozen=True)
class AppConfig:
    """Everything that defines how the tumour model is trained and served.

    Every task (inference, training, scoring, the datastore, the server's guard) reads this one frozen object,
    always under the name ``app_config``.

    Attributes:
        plan: labels, channels, preprocessing and architecture (:class:`ModelPlan`), recorded in checkpoints.
        sequences: names of the sequences of a multi-sequence case, in channel order (``t2f,t1c,t1n,t2w``); the
            first is the one annotators read and label. Empty: each image file is one case.
        outline_names: expert outline names (RTSTRUCT ROI or SEG segment names in a PACS) and the label each
            stands for, e.g. ``(("GTV_Mass_CT", "tumor"),)``; names equal to a label (ignoring case) need no entry.
        patch_size: training crop in voxels, and the smallest sliding window.
        window_voxels: largest sliding window at inference, validation and scoring, in voxels: the whole image in
            one window when it fits, else fewer, larger windows than the training patch.
        dropout: dropout probability used only by the Monte-Carlo uncertainty network.
        tta: test-time augmentation of auto segmentation: ``off``, or ``mirror`` (the mean of the image and its
            three in-plane mirrors, four forward passes).
        amp: mixed precision of the networks' forward pass (:mod:`lib.networks.precision`): ``auto`` (float16 on
            CUDA, bfloat16 on CPUs with native bfloat16, else float32), ``on`` (bfloat16 on any CPU) or ``off``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        checkpoint: starting checkpoint of the segmentation network, served until the first training run
            publishes weights ("" for none). By default (``auto``) the model shipped for the modality
            (``<app_dir>/pretrained/<modality>_tumor.pt``) when its plan equals this one.
        model_dir: folder holding published weights, training stats and runs.
        epochs: epochs of the segmentation network in one training run (the ``max_epochs`` Train option).
        click_epochs: epochs of the click network trained after the segmentation network in the same run, at
            most the run's ``max_epochs`` (0: do not train it).
        click_rounds: simulated corrective clicks per training iteration of the click network.
        train_minutes: wall-clock budget of one training run, both networks together (:mod:`lib.trainers.run`).
        learning_rate: AdamW learning rate of a network trained from scratch on this server's labels.
        finetune_learning_rate: AdamW learning rate of a network whose weights descend from a starting checkpoint
            (the shipped model, or ``checkpoint``): a tenth of ``learning_rate``, so that the first labels adjust
            the starting model instead of overwriting what it learned (fine-tuning at 1e-3 from one label halved
            its Dice on held-out cases: ``benchmarks/campaign.py``, README).
        finetune_min_labels: labelled cases a run needs before weights that descend from a starting checkpoint
            replace it; runs on fewer train and keep their final weights (the next run continues from them) while
            the starting model stays served. Rounds on 1-3 new labels cannot be validated and fell below their
            starting model in 14 of 27 measured rounds (``benchmarks/campaign.py``, benchmarks/README.md); 1
            publishes from the first label.
        replay_studies: a labelled studies folder (images, ``labels/final``) whose cases are mixed into every
            training run, at most as many as the run's own training cases (:mod:`lib.trainers.replay`): the
            starting model's own training cases, when a hospital has them, so fine-tuning does not forget them.
            They never validate. "" for none.
        val_split: fraction of labelled cases held out for validation (at least one case is kept for training).
        min_val_cases: validation cases a run needs to publish its best-validating epoch (or keep the served
            weights when none beats them); with fewer, validation is too noisy to choose by and the run publishes
            its final weights.
        samples_per_case: random patches drawn from a case per training iteration.
        foreground_share: probability that a training patch of the segmentation network is centred on a labelled
            voxel (else on an unlabelled one): 2/3 by default (2 tumour : 1 background); nnU-Net's is 1/3. The
            click network keeps 2/3.
        augmentation: ``spatial`` (random flips along each axis, intensity jitter, and nnU-Net's random rotation
            and scaling, :func:`lib.transforms.pipeline.spatial_augmentation`), or ``flips`` (without the rotation
            and scaling). ``spatial`` by default: it cross-validated better on the STS CT cases at the default
            8-minute budget (benchmarks/README.md).
        cache_cases: preprocessed training cases kept in memory (the rest are loaded on demand).
        mc_samples: Monte-Carlo dropout passes per image for epistemic scoring.
        background_niceness: niceness of the server's background jobs (training runs and scoring) from the moment
            they start, so an annotator's requests get the CPU first; 0 runs them at the server's priority.
        tracking: ``"none"`` or ``"mlflow"`` (an sqlite store inside ``model_dir`` unless a URI is given).
        tracking_uri: MLflow tracking URI when ``tracking`` is ``"mlflow"``.
        users: the users file (``tumor-users``); login is on when it is given.
        auth: ``"auto"`` (login on when ``users`` is given) or ``"off"``, which lets the server listen beyond
            this machine without login (a warning is logged).
        token_minutes: lifetime of a login token.
        max_upload_mb: largest request body accepted, in MiB (413 above it).
        max_voxels: largest volume accepted (voxels times channels, read from the header before the voxels).
    """

    plan: ModelPlan = field(default_factory=ModelPlan)
    sequences: tuple[str, ...] = ()
    outline_names: tuple[tuple[str, str], ...] = ()
    patch_size: tuple[int, int, int] = (96, 96, 32)
    window_voxels: int = 160 * 160 * 64
    dropout: float = 0.2
    tta: str = "off"
    device: str = "auto"
    amp: str = "auto"
    checkpoint: str = ""
    model_dir: str = ""
    epochs: int = 50
    click_epochs: int = 20
    click_rounds: int = 3
    train_minutes: float = 8.0
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    finetune_min_labels: int = 4
    replay_studies: str = ""
    val_split: float = 0.2
    min_val_cases: int = 3
    samples_per_case: int = 4
    foreground_share: float = 2 / 3
    augmentation: str = "spatial"
    cache_cases: int = 16
    mc_samples: int = 5
    background_niceness: int = 10
    tracking: str = "none"
    tracking_uri: str = ""
    users: str = ""
    auth: str = AUTO
    token_minutes: float = 8 * 60.0
    max_upload_mb: int = 1024
    max_voxels: int = 256_000_000  # a 512x512 CT of up to 976 slices

    @property
    def outline_values(self) -> dict[str, int]:
        """Lower-case expert outline name -> label value: the labels' own names and the ``outline_names``."""
        values = self.plan.label_values
        named = {name.lower(): value for name, value in values.items()}
        return {**named, **{outline.lower(): values[label] for outline, label in self.outline_names}}

    def torch_device(self) -> torch.device:
        """The device to run on; ``auto`` picks CUDA when available."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
