"""Human-designed structure descriptors as a scikit-learn transformer."""
from ._compute import ALL_DESCRIPTORS, CRYSTAL_SYSTEMS
from .bank import DescriptorBank, clear_descriptor_cache
from .matminer import MatminerFeaturizer

__all__ = ["DescriptorBank", "MatminerFeaturizer", "ALL_DESCRIPTORS", "CRYSTAL_SYSTEMS", "clear_descriptor_cache"]
