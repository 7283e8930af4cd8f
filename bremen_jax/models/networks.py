"""Small Flax (linen) networks exposed as pure ``init``/``apply`` functions.

The rest of the library only sees ``Network(init, apply)``: ``init(key) -> params`` and
``apply(params, x) -> y``. Parameters are plain pytrees, so an ensemble is a leading axis
(``jax.vmap(net.init)(member_keys)``) and runs/seeds are another (style.md §3.4).

Initialisation defaults follow the original's ``tf.layers.dense``: Glorot-uniform kernels and
zero biases (bremen-algorithm.md §2, ``model/dynamics.py:6-33``). Layers are named
``hidden_0 … hidden_{L-1}`` and ``output`` so callers can address them (e.g. the dynamics L2
term, which covers the hidden kernels only).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def hidden_kernels(params: Params) -> list[jax.Array]:
    """The kernels of the hidden layers (``hidden_*``) of an :class:`MLP` parameter dict."""
    layers = params["params"]
    return [layers[name]["kernel"] for name in sorted(layers) if name.startswith("hidden_")]
