"""concrete: continuous relaxations of discrete random variables.

The library behind *The Concrete Distribution* book.
"""

from concrete import estimators
from concrete.binary_vae import BinaryVAE
from concrete.device import get_device, seed_everything
from concrete.distributions import BinaryConcrete, Concrete, ExpConcrete, LogitBinaryConcrete
from concrete.estimators import estimate_gradient, exact_gradient
from concrete.gumbel import exponential_race, gumbel_max, sample_gumbel
from concrete.kl import categorical_kl, relaxed_kl
from concrete.relaxed import gumbel_softmax, validate_temperature

__all__ = [
    "get_device",
    "seed_everything",
    "sample_gumbel",
    "gumbel_max",
    "exponential_race",
    "gumbel_softmax",
    "validate_temperature",
    "ExpConcrete",
    "Concrete",
    "BinaryConcrete",
    "LogitBinaryConcrete",
    "relaxed_kl",
    "categorical_kl",
    "estimators",
    "estimate_gradient",
    "exact_gradient",
    "BinaryVAE",
]
__version__ = "0.1.0"
