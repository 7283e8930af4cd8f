"""The library's one MLP: a Flax (linen) module exposed as pure ``init``/``apply`` functions.

Every network of BREMEN is this MLP: the dynamics members, the policy and the MLP value
function. Parameters are the flax variable dict ``{"params": {"hidden_0": {"kernel": [in, h0],
"bias": [h0]}, …, "hidden_{L-1}": …, "output": {…}}}``, a plain pytree, so an ensemble is a
leading axis (``jax.vmap(net.init)(member_keys)``) and runs/seeds are another (style.md §3.4).
Layers are named so callers can address them (e.g. the dynamics L2 term covers the hidden
kernels only, :func:`hidden_kernels`).

Two initialisations of the same parameters:

* :func:`make_mlp` (dynamics): Glorot-uniform kernels and zero biases, the original's
  ``tf.layers.dense`` default (bremen-algorithm.md §2, ``model/dynamics.py:6-33``);
* :func:`init_normc` (policy, value function): the original's "normc" columns
  (``libs/misc/tf_networks.py:19-23``), from a fixed NumPy seed or from a key.

:func:`apply_mlp` runs any such parameters (layer widths are read from the kernels).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax.types import Params, PRNGKey

Activation = Callable[[jax.Array], jax.Array]
Initializer = Callable[..., jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "swish": nn.swish,
    "sigmoid": nn.sigmoid,
    "identity": lambda x: x,
}

PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


class MLP(nn.Module):
    """Fully connected network: ``hidden_sizes`` activated layers, then a linear output layer.

    Attributes:
        hidden_sizes: widths of the hidden layers, e.g. ``(1024, 1024)``.
        out_size: width of the (linear) output layer.
        activation: hidden-layer nonlinearity.
        kernel_init: kernel initialiser of the hidden layers (Glorot-uniform, TF1 default).
        output_kernel_init: kernel initialiser of the output layer (``None``: ``kernel_init``).
        precision: matmul precision passed to every ``Dense`` (``None``: JAX default).
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: Activation = nn.relu
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    output_kernel_init: Initializer | None = None
    precision: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[..., in] -> [..., out_size]``."""
        for i, width in enumerate(self.hidden_sizes):
            x = nn.Dense(width, kernel_init=self.kernel_init, bias_init=nn.initializers.zeros,
                         precision=self.precision, name=f"hidden_{i}")(x)
            x = self.activation(x)
        out_init = self.output_kernel_init or self.kernel_init
        return nn.Dense(self.out_size, kernel_init=out_init, bias_init=nn.initializers.zeros,
                        precision=self.precision, name="output")(x)


class Network(NamedTuple):
    """Pure functions of a network: ``init(key) -> params``, ``apply(params, x) -> y``."""

    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, jax.Array], jax.Array]


def get_activation(activation: str | Activation) -> Activation:
    """Returns the activation function named ``activation`` (or ``activation`` if callable)."""
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}")
    return ACTIVATIONS[activation]


def make_mlp(in_size: int, hidden_sizes: Sequence[int], out_size: int,
             activation: str | Activation = "relu",
             kernel_init: Initializer = nn.initializers.glorot_uniform(),
             output_kernel_init: Initializer | None = None,
             precision: str | None = None) -> Network:
    """Builds an MLP ``[..., in_size] -> [..., out_size]`` as a :class:`Network`.

    Args:
        in_size: input width (used to build the parameters in ``init``).
        hidden_sizes: hidden widths, e.g. ``(1024, 1024)``; may be empty (linear model).
        out_size: output width.
        activation: name in :data:`ACTIVATIONS` or a callable.
        kernel_init: kernel initialiser (default Glorot-uniform, the TF1 default); biases are 0.
        output_kernel_init: output-layer kernel initialiser (``None``: same as ``kernel_init``).
        precision: matmul precision (``None``/"default", "high", "highest", ...).

    Returns:
        ``Network``; ``init(key)`` returns the flax variable dict ``{"params": {...}}`` with
        layers ``hidden_{i}`` and ``output``, each ``{"kernel": [in, out], "bias": [out]}``.
    """
    if int(in_size) <= 0:
        raise ValueError(f"in_size: expected a positive int, got {in_size!r}")
    if int(out_size) <= 0:
        raise ValueError(f"out_size: expected a positive int, got {out_size!r}")
    if any(int(h) <= 0 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes: expected positive ints, got {tuple(hidden_sizes)!r}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision: expected None or one of {PRECISIONS}, got {precision!r}")
    module = MLP(hidden_sizes=tuple(int(h) for h in hidden_sizes), out_size=int(out_size),
                 activation=get_activation(activation), kernel_init=kernel_init,
                 output_kernel_init=output_kernel_init, precision=precision)
    dummy = jnp.zeros((1, int(in_size)), jnp.float32)

    def init(key: PRNGKey) -> Params:
        return module.init(key, dummy)

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return module.apply(params, x)

    return Network(init=init, apply=apply)


def check_mlp_sizes(owner: str, hidden_sizes: Sequence[int], **sizes: int) -> tuple[int, ...]:
    """Validates the widths of a network config; returns ``hidden_sizes`` as a tuple.

    Args:
        owner: config class name for the messages (``"PolicyConfig"``).
        hidden_sizes: hidden widths; each must be a positive (Python or NumPy) int.
        **sizes: other sizes (``obs_dim=…``), each a positive int.

    Raises:
        ValueError: ``"{owner}.{field} must be …"`` for the first bad field.
    """
    def positive_int(value):
        return isinstance(value, (int, np.integer)) and value > 0

    for name, value in sizes.items():
        if not positive_int(value):
            raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")
    hidden = tuple(hidden_sizes)
    if not all(positive_int(h) for h in hidden):
        raise ValueError(f"{owner}.hidden_sizes must be positive ints, got {hidden!r}")
    return hidden


def mlp_layers(params: Params) -> list[dict[str, jax.Array]]:
    """The layers of :class:`MLP` parameters in order: ``hidden_0 … hidden_{L-1}``, ``output``.

    Each layer is ``{"kernel": [in, out], "bias": [out]}`` (plus any leading vmap axes).
    """
    layers = params["params"]
    hidden = sorted((name for name in layers if name.startswith("hidden_")),
                    key=lambda name: int(name[len("hidden_"):]))
    return [layers[name] for name in hidden] + [layers["output"]]


def hidden_kernels(params: Params) -> list[jax.Array]:
    """The kernels of the hidden layers (``hidden_*``) of :class:`MLP` parameters, in order."""
    return [layer["kernel"] for layer in mlp_layers(params)[:-1]]


def apply_mlp(params: Params, x: jax.Array, activation: str | Activation = "relu",
              precision: str | None = None) -> jax.Array:
    """``[..., in] -> [..., out]``: the :class:`MLP` forward pass of any MLP parameters.

    Args:
        params: ``{"params": {"hidden_i": …, "output": …}}`` (from :func:`make_mlp` or
            :func:`init_normc`); the layer widths are read from the kernel shapes.
        x: ``[..., in]`` inputs.
        activation: hidden-layer nonlinearity (name in :data:`ACTIVATIONS` or a callable).
        precision: matmul precision (``None``: JAX default).
    """
    *hidden, output = mlp_layers(params)
    module = MLP(hidden_sizes=tuple(layer["kernel"].shape[-1] for layer in hidden),
                 out_size=output["kernel"].shape[-1], activation=get_activation(activation),
                 precision=precision)
    return module.apply(params, x)


@functools.lru_cache(maxsize=64)
def _normc_numpy(seed: int, fan_in: int, fan_out: int, std: float) -> np.ndarray:
    """Original ``normc_initializer``: fresh ``RandomState(seed)`` per layer. ``[in, out]``."""
    npr = np.random.RandomState(seed)
    out = npr.randn(fan_in, fan_out).astype(np.float32)
    out *= std / np.sqrt(np.square(out).sum(axis=0, keepdims=True))
    out.setflags(write=False)
    return out


def _normc_jax(key: PRNGKey, fan_in: int, fan_out: int, std: float) -> jax.Array:
    """Normc columns drawn from ``key``: ``[in, out]`` float32, column norm ``std``."""
    out = jax.random.normal(key, (fan_in, fan_out), jnp.float32)
    return out * (std / jnp.sqrt(jnp.sum(jnp.square(out), axis=0, keepdims=True)))


def init_normc(key: PRNGKey, sizes: Sequence[int], init_seed: Optional[int] = 1234,
               output_std: float = 0.01, hidden_std: float = 1.0) -> Params:
    """Normc-initialised :class:`MLP` parameters (zero biases), as the original's policies.

    The original draws every layer from a fresh ``np.random.RandomState(1234)``, so the
    initial weights are identical in every run; with ``init_seed`` set this reproduces that
    draw exactly with NumPy (the weights are compile-time constants).

    Args:
        key: used only when ``init_seed is None`` (one sub-key per layer).
        sizes: ``[in, h1, ..., out]`` layer widths.
        init_seed: NumPy seed of the original's fixed-seed init, or ``None``.
        output_std: column norm of the output kernel (0.01 for policies).
        hidden_std: column norm of the hidden kernels.

    Returns:
        ``{"params": {"hidden_i": {"kernel": [in, out], "bias": [out]}, "output": …}}``,
        float32; runs with :func:`apply_mlp`.
    """
    num_layers = len(sizes) - 1
    keys = jax.random.split(key, num_layers)
    layers = {}
    for i in range(num_layers):
        is_output = i == num_layers - 1
        std = output_std if is_output else hidden_std
        if init_seed is None:
            kernel = _normc_jax(keys[i], sizes[i], sizes[i + 1], std)
        else:
            kernel = jnp.asarray(_normc_numpy(int(init_seed), sizes[i], sizes[i + 1],
                                              float(std)))
        layers["output" if is_output else f"hidden_{i}"] = {
            "kernel": kernel, "bias": jnp.zeros((sizes[i + 1],), jnp.float32)}
    return {"params": layers}
