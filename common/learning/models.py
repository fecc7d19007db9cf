"""The calcification detector and the malignancy classifier (pure torch, Opacus-ready).

Both use GroupNorm (per-sample statistics, so DP-SGD's per-sample gradients stay valid)
and no in-place operations. Widths are configurable: the defaults train in minutes on two
CPU cores; GPU users can widen them.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from common.learning.descriptors import NAMES as DESCRIPTOR_NAMES
from common.learning.descriptors import describe_batch, standardise
from common.learning.verifier import Verifier, VerifierConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorConfig:
    """Detector architecture and training geometry.

    Attributes
    ----------
    width : int
        Channels of the first stage (doubled at each of the two downsamplings).
    patch : int
        Training patch side in canonical pixels.
    stride : int
        Output stride of the heatmap (2: one heatmap pixel per 2x2 image pixels).
    sigma : float
        Gaussian radius of a calcification's target peak, in heatmap pixels.
    """

    width: int = 12
    patch: int = 96
    stride: int = 2
    sigma: float = 1.0
    groups: int = 4


ARCHES = ("cnn", "descriptors")


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier architecture and crop size (canonical pixels at the data's spacing).

    Attributes
    ----------
    arch : {"cnn", "descriptors"}
        ``cnn``: a small CNN on the crop (:class:`Classifier`); ``descriptors``: a logistic
        model on fixed morphometric descriptors of the crop (:class:`DescriptorClassifier`),
        the choice for DP-SGD on a few hundred clusters.
    """

    width: int = 12
    crop: int = 96
    groups: int = 4
    arch: str = "cnn"

    def __post_init__(self) -> None:
        """Validate the architecture name."""
        if self.arch not in ARCHES:
            raise ValueError(f"classifier arch {self.arch!r}: expected one of {ARCHES}")


def _block(cin: int, cout: int, groups: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(),
    )


class HighPass(nn.Module):
    """Two channels: the image and the image minus its local mean (no parameters).

    Calcifications are small bright spots on slowly varying tissue; giving the network
    the background-subtracted image directly makes them easy to see from few examples.
    """

    def __init__(self, size: int = 9) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, 2, H, W): x and x - box_mean(x)."""
        local = F.avg_pool2d(
            x, self.size, stride=1, padding=self.size // 2, count_include_pad=False
        )
        return torch.cat([x, (x - local) * 4.0], dim=1)


class Detector(nn.Module):
    """Fully convolutional heatmap network (CenterNet-style, one peak per calcification).

    A small U-Net: full resolution → 1/2 → 1/4 and back to 1/2, where the heatmap logits
    are produced; any input whose sides are multiples of 4 works.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        super().__init__()
        if config.stride != 2:
            raise ValueError("this detector produces stride-2 heatmaps")
        c, g = config.width, config.groups
        self.config = config
        self.stem = nn.Sequential(HighPass(), _block(2, c, g), _block(c, c, g))
        self.down1 = nn.Sequential(_block(c, 2 * c, g, stride=2), _block(2 * c, 2 * c, g))
        self.down2 = nn.Sequential(_block(2 * c, 4 * c, g, stride=2), _block(4 * c, 4 * c, g))
        self.up = nn.Sequential(_block(6 * c, 2 * c, g), _block(2 * c, 2 * c, g))
        self.head = nn.Conv2d(2 * c, 1, 1)
        # start with a low prior probability of a peak (focal-loss practice)
        nn.init.constant_(self.head.bias, -4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return heatmap logits of shape (N, 1, H/2, W/2)."""
        s1 = self.down1(self.stem(x))
        s2 = self.down2(s1)
        up = F.interpolate(s2, scale_factor=2.0, mode="nearest")
        return self.head(self.up(torch.cat([up, s1], dim=1)))

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Return the same logits as :meth:`forward`, computed for inference only.

        Channels-last tensors (what oneDNN's CPU convolutions run fastest on), the 9x9 box
        mean from cumulative sums, the decoder's convolution of the upsampled features
        at their own resolution (:func:`_upsampled_conv`) and in-place ReLU: the same
        arithmetic up to float rounding, without autograd's bookkeeping, so it is not for
        training or Opacus.

        Parameters
        ----------
        x : torch.Tensor
            (N, 1, H, W) float32 images.
        dtype : torch.dtype
            ``torch.bfloat16`` runs every layer after the first in bfloat16 (faster on
            CPUs that multiply it natively, see :func:`inference_dtype`). The
            first layer, which sees the raw pixels, and the head stay in float32, so a
            faint calcification's contrast is not rounded away.
        """
        h = _infer_high_pass(x, self.stem[0])
        h = _infer_blocks(self.stem[1:2], h)
        # bfloat16 convolutions run faster on contiguous tensors, float32 on channels-last
        h = h.to(dtype).contiguous() if dtype != torch.float32 else h
        h = _infer_blocks(self.stem[2:], h)
        s1 = _infer_blocks(self.down1, h)
        s2 = _infer_blocks(self.down2, s1)
        conv, norm, _ = self.up[0]
        h = _infer_blocks(self.up[1:], _norm_relu(norm, _upsampled_conv(conv, s2, s1)))
        return self.head(h.float()).contiguous()


PRECISIONS = ("auto", "float32", "bfloat16")


def inference_dtype(precision: str) -> torch.dtype:
    """Return the detector's inference dtype for a precision setting.

    ``auto`` is bfloat16 where this CPU multiplies it natively (AVX512-BF16 or AMX, which
    oneDNN uses) *and* the detector runs measurably faster in it here
    (:func:`precision_timings`, once per process), float32 elsewhere: CPUs reporting
    AVX512-BF16 have run the detector both faster and slower in bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return _auto_dtype()
    return torch.float32 if precision == "float32" else torch.bfloat16


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively where oneDNN can use it."""
    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return bool(native and torch.backends.mkldnn.is_available())


# bfloat16 rounds the heatmap: it is taken only for a clear gain
AUTO_GAIN = 0.9


@functools.cache
def _auto_dtype() -> torch.dtype:
    if not native_bfloat16():
        return torch.float32
    timings = precision_timings()
    choice = faster_dtype(timings)
    logger.info(
        "precision auto: %s (the detector's windows %.1f ms in bfloat16, %.1f ms in float32)",
        str(choice).removeprefix("torch."),
        1000 * timings[torch.bfloat16],
        1000 * timings[torch.float32],
    )
    return choice


def faster_dtype(timings: dict[torch.dtype, float]) -> torch.dtype:
    """Return bfloat16 when it took at most :data:`AUTO_GAIN` of float32's time."""
    fast = timings[torch.bfloat16] <= AUTO_GAIN * timings[torch.float32]
    return torch.bfloat16 if fast else torch.float32


def precision_timings(
    config: DetectorConfig = DetectorConfig(), windows: int = 8, side: int = 160, repeats: int = 3
) -> dict[torch.dtype, float]:
    """Fastest of ``repeats`` timings of :meth:`Detector.infer` per dtype, seconds.

    A detector of ``config`` with seeded weights runs on a batch of ``windows`` random
    ``side`` x ``side`` windows (the cascade's batch of 160-pixel windows is the default),
    float32 and bfloat16 in turn so both see the same machine state. The global random
    state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        detector = Detector(config).eval()
        x = torch.rand(windows, 1, side, side)
    dtypes = (torch.float32, torch.bfloat16)
    best = dict.fromkeys(dtypes, float("inf"))
    for dtype in dtypes:  # the first call of each dtype builds oneDNN's kernels
        detector.infer(x, dtype)
    for _ in range(repeats):
        for dtype in dtypes:
            start = time.perf_counter()
            detector.infer(x, dtype)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best


def _box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over each ``size`` x ``size`` window, clipped to the image.

    What ``avg_pool2d(..., count_include_pad=False)`` gives, from cumulative sums: O(1) per
    pixel, not O(size²).
    """
    pad = size // 2
    centre = x.mean(dim=(2, 3), keepdim=True)  # keeps the float32 running sums small
    sums = F.pad(x - centre, (pad + 1, pad, pad + 1, pad)).cumsum(2).cumsum(3)
    box = (
        sums[:, :, size:, size:]
        - sums[:, :, :-size, size:]
        - sums[:, :, size:, :-size]
        + sums[:, :, :-size, :-size]
    )
    h, w = x.shape[2:]

    def counts(n: int) -> torch.Tensor:
        i = torch.arange(n)
        return (torch.clamp(i + pad, max=n - 1) - torch.clamp(i - pad, min=0) + 1).to(x.dtype)

    return box / (counts(h)[:, None] * counts(w)[None, :]) + centre


# Rows of a 3x3 kernel that fall on each of the two source rows a 2x-nearest-upsampled
# row sees: an even output row reads source rows (i-1, i, i), an odd one (i, i, i+1).
_PHASE_TAPS = torch.tensor(
    [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
)  # (phase, tap, kernel row)


def _upsampled_conv(conv: nn.Conv2d, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``conv(cat([upsample_2x_nearest(low), skip]))`` without upsampling ``low``.

    A 3x3 convolution of a nearest-upsampled map is, at each of the four output phases
    (row and column parity), a 2x2 convolution of the map itself. The four phases run
    as one convolution at ``low``'s resolution (4/9 of the multiplications) and are
    interleaved into the convolution of ``skip``. ``conv`` is 3x3 with padding 1.
    """
    dt = skip.dtype
    n, c_low, h, w = low.shape
    weight = conv.weight
    cout = weight.shape[0]
    taps = _PHASE_TAPS.to(weight.dtype)
    # (cout, p, q, cin, a, b): output channel cout * 4 + p * 2 + q
    phases = torch.einsum("pay,ocyx,qbx->opqcab", taps, weight[:, :c_low], taps)
    phases = phases.reshape(cout * 4, c_low, 2, 2).to(dt)
    # a 2x2 window over the map padded by 1 starts one row/column before the source pixel
    low_out = F.conv2d(F.pad(low, (1, 1, 1, 1)), phases).unflatten(1, (cout, 2, 2))
    bias = None if conv.bias is None else conv.bias.to(dt)
    out = F.conv2d(skip, weight[:, c_low:].to(dt), bias, 1, 1)
    grid = out.view(n, cout, h, 2, w, 2)  # a view in either memory format, never a copy
    for p in (0, 1):
        for q in (0, 1):
            grid[:, :, :, p, :, q] += low_out[:, :, p, q, p : p + h, q : q + w]
    return out


def _infer_high_pass(x: torch.Tensor, high_pass: HighPass) -> torch.Tensor:
    """:class:`HighPass` from cumulative sums, channels-last (inference only)."""
    local = _box_mean(x, high_pass.size)
    return torch.cat([x, (x - local) * 4.0], dim=1).contiguous(memory_format=torch.channels_last)


def _norm_relu(norm: nn.GroupNorm, y: torch.Tensor) -> torch.Tensor:
    """GroupNorm then in-place ReLU, the affine cast to ``y``'s dtype (inference only)."""
    dt = y.dtype  # the weights are float32: cast to the activations' dtype
    return F.group_norm(y, norm.num_groups, norm.weight.to(dt), norm.bias.to(dt), norm.eps).relu_()


def _infer_blocks(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run conv → GroupNorm → ReLU blocks with in-place ReLU (inference only)."""
    for conv, norm, _ in blocks:
        dt = x.dtype
        bias = None if conv.bias is None else conv.bias.to(dt)
        x = _norm_relu(norm, F.conv2d(x, conv.weight.to(dt), bias, conv.stride, conv.padding))
    return x


class Classifier(nn.Module):
    """Benign vs malignant from an ROI crop around a cluster: one logit per crop."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        c, g = config.width, config.groups
        self.config = config
        # two full-resolution layers first: fine calcifications are 1–3 pixels wide
        self.features = nn.Sequential(
            HighPass(),
            _block(2, c, g),
            _block(c, c, g),
            _block(c, 2 * c, g, stride=2),
            _block(2 * c, 2 * c, g),
            _block(2 * c, 4 * c, g, stride=2),
            _block(4 * c, 4 * c, g, stride=2),
        )
        self.head = nn.Linear(8 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return malignancy logits of shape (N,)."""
        return self._pool(self.features(x))

    def _pool(self, f: torch.Tensor) -> torch.Tensor:
        # max pooling keeps a few bright calcifications from being averaged away
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled).squeeze(1)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Return the same logits as :meth:`forward`, computed for inference only.

        The detector's float32 inference path (:meth:`Detector.infer`): channels-last
        tensors, the box mean from cumulative sums, in-place ReLU; not for training.
        """
        return self._pool(_infer_blocks(self.features[1:], _infer_high_pass(x, self.features[0])))


class DescriptorClassifier(nn.Module):
    """Benign vs malignant as a logistic model on fixed cluster descriptors.

    The descriptors (:mod:`common.learning.descriptors`: count, size, shape, contrast and layout of
    the calcifications in the crop) have no parameters, so only ``len(NAMES) + 1`` weights
    are trained: DP-SGD's noise then barely moves the result (the CNN's ~50k weights need
    far more clusters than a consortium of a few hospitals has at ε = 8).
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig(arch="descriptors")) -> None:
        super().__init__()
        self.config = config
        self.head = nn.Linear(len(DESCRIPTOR_NAMES), 1)
        # p = 0.5 for every crop until trained: no random starting preference
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def describe(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) crops → (N, F) standardised descriptors; (N, F) pass through."""
        if x.dim() == 2:
            return x
        d = standardise(describe_batch(x.detach().cpu().numpy()))
        return torch.from_numpy(d).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return malignancy logits of shape (N,) from crops or :meth:`describe` output."""
        return self.head(self.describe(x)).squeeze(1)


KINDS = {
    "detector": (Detector, DetectorConfig),
    "classifier": (Classifier, ClassifierConfig),
    "verifier": (Verifier, VerifierConfig),
}


def build(kind: str, config: dict | None = None) -> nn.Module:
    """Build a model by kind ('detector', 'classifier' or 'verifier') from a config dict."""
    cls, cfg_cls = KINDS[kind]
    known = {f.name for f in fields(cfg_cls)}
    unknown = set(config or {}) - known
    if unknown:
        raise ValueError(f"unknown {kind} config keys: {sorted(unknown)}")
    cfg = cfg_cls(**(config or {}))
    if kind == "classifier" and cfg.arch == "descriptors":
        return DescriptorClassifier(cfg)
    return cls(cfg)


def unwrap(model: nn.Module) -> nn.Module:
    """Return the plain module under its DP wrappers (each keeps it as ``_module``)."""
    while isinstance(getattr(model, "_module", None), nn.Module):
        model = model._module
    return model


def state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's weights with no wrapper prefixes."""
    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}


def save_models(run_dir: str | Path, models: dict[str, nn.Module], meta: dict) -> Path:
    """Write each model's ``state_dict`` and ``model.json`` (architectures + ``meta``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {"format": 1, **meta, "models": {}}
    for kind, model in models.items():
        torch.save(state_dict(model), run_dir / f"{kind}.pt")
        spec["models"][kind] = asdict(unwrap(model).config)
    (run_dir / "model.json").write_text(json.dumps(spec, indent=2))
    return run_dir


def load_models(run_dir: str | Path) -> tuple[dict[str, nn.Module], dict]:
    """Load what :func:`save_models` wrote: ({kind: model in eval mode}, spec)."""
    run_dir = Path(run_dir)
    spec_path = run_dir / "model.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: not a calcifl model folder (no model.json)")
    spec = json.loads(spec_path.read_text())
    models = {}
    for kind, config in spec["models"].items():
        model = build(kind, config)
        weights = torch.load(run_dir / f"{kind}.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        models[kind] = model.eval()
    return models, spec


def load_run(run_dir: str | Path):
    """Load a run folder for inference: (models, ReadOptions, CascadeConfig, spec)."""
    from common.imaging.reading import ReadOptions
    from common.learning.inference import CascadeConfig

    models, spec = load_models(run_dir)
    return (
        models,
        ReadOptions.from_dict(spec["preprocessing"]),
        CascadeConfig(**spec["cascade"]),
        spec,
    )


def flat_state(models: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every model's weights in one dict, keys prefixed by the model's name.

    The order is fixed (models in the given order, each in ``state_dict`` order) and no
    Opacus wrapper prefix appears, so federated aggregation sees the same keys everywhere.
    """
    return {f"{kind}.{k}": v for kind, m in models.items() for k, v in state_dict(m).items()}


def load_flat_state(models: dict[str, nn.Module], flat: dict[str, torch.Tensor]) -> None:
    """Load :func:`flat_state` output into ``models``.

    Raises
    ------
    ValueError
        Naming missing, unexpected or wrongly shaped arrays (nothing is loaded then).
    """
    expected = flat_state(models)
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    wrong = [
        f"{k} {tuple(flat[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in flat and flat[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for name, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{name}: {', '.join(items[:5])}{more}")
        raise ValueError("arrays do not fit the models: " + "; ".join(parts))
    for kind, model in models.items():
        prefix = f"{kind}."
        own = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
        unwrap(model).load_state_dict({k: torch.as_tensor(v) for k, v in own.items()})


def parameter_bytes(models: dict[str, nn.Module]) -> int:
    """Bytes of every model's weights in float32."""
    return sum(v.numel() * 4 for v in flat_state(models).values())


def seeded_models(configs: dict[str, dict], seed: int) -> dict[str, nn.Module]:
    """Build ``{kind: model}`` with initial weights set by ``seed`` alone.

    Seeding here, not wherever the caller happens to be, keeps a run's starting point the
    same in every process (centralised baseline, federated server, a resumed run).
    """
    torch.manual_seed(seed)
    return {kind: build(kind, config) for kind, config in configs.items()}
