"""Human-designed structure descriptors as a scikit-learn transformer."""
from ._compute import ALL_DESCRIPTORS, CRYSTAL_SYSTEMS
from .bank import DescriptorBank, clear_descriptor_cache

__all__ = ["DescriptorBank", "ALL_DESCRIPTORS", "CRYSTAL_SYSTEMS", "clear_descriptor_cache"]
