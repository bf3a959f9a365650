"""concrete: continuous relaxations of discrete random variables.

The library behind *The Concrete Distribution* book.
"""

from concrete.device import get_device, seed_everything

__all__ = ["get_device", "seed_everything"]
__version__ = "0.1.0"
