"""Presets as data, at the bottom of the package: the published catalog
(``catalog``), the shipped and cached manifests (``registry``), resumable
checked downloads (``download``) and the model classes by name (``tasks``).

Nothing here imports a model: ``tasks.get_task`` finds a model class by the
name a preset's metadata gives, so the layers above build models from presets
without importing one another (docs/architecture.md).
"""
