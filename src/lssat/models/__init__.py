"""The L-SSAT multi-task model: backbones, masking, decoders, auxiliary tasks and recipes."""

from lssat.models.backbones import create_backbone
from lssat.models.lssat import LSSATModel, count_parameters, flops_per_image
from lssat.models.recipe import Recipe, load_recipe

__all__ = ["LSSATModel", "Recipe", "count_parameters", "create_backbone", "flops_per_image", "load_recipe"]
