"""ModelSettings: a model's model-settings.json, as MLServer reads it."""
import json
import os

from .types import MetadataTensor, _Base


class Settings(_Base):
    _fields = (("debug", False), ("parallel_workers", 0), ("model_repository_root", "."))


class ModelParameters(_Base):
    _fields = (("uri", None), ("version", None), ("format", None), ("content_type", None),
               ("extra", {}))


class ModelSettings(_Base):
    _fields = (("name", ""), ("implementation", None), ("parameters", None), ("inputs", []),
               ("outputs", []), ("platform", ""), ("versions", []), ("max_batch_size", 0),
               ("max_batch_time", 0.0), ("warm_workers", False), ("parallel_workers", None))

    def __init__(self, **kwargs):
        source = kwargs.pop("_source", None)
        super().__init__(**kwargs)
        self._source = source
        if isinstance(self.parameters, dict):
            self.parameters = ModelParameters(**self.parameters)
        self.inputs = [MetadataTensor(**t) if isinstance(t, dict) else t for t in self.inputs or []]
        self.outputs = [MetadataTensor(**t) if isinstance(t, dict) else t
                        for t in self.outputs or []]

    @property
    def version(self):
        return self.parameters.version if self.parameters else None

    @classmethod
    def parse_file(cls, path):
        with open(path) as f:
            raw = json.load(f)
        raw["_source"] = os.path.abspath(path)
        return cls(**raw)
