"""The paper's experiments, one script each (`python recipes/ssd_coco.py --help`);
importable as a package from the repository root (`from recipes import ssd_coco`)."""
