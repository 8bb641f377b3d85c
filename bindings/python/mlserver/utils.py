"""get_model_uri, as MLServer resolves a model's artifact."""
import os

from .errors import InvalidModelURI


def _folder(settings):
    source = getattr(settings, "_source", None)
    return os.path.dirname(source) if source else os.getcwd()


async def get_model_uri(settings, wellknown_filenames=()):
    """The model's artifact: parameters.uri (relative to the settings' folder), or the first
    well-known file name found in that folder; the folder itself when none is."""
    params = settings.parameters
    uri = (params.uri if params is not None else None) or ""
    full = uri if os.path.isabs(uri) else os.path.normpath(os.path.join(_folder(settings), uri))
    if os.path.isfile(full):
        return full
    if os.path.isdir(full):
        for name in wellknown_filenames:
            candidate = os.path.join(full, name)
            if os.path.isfile(candidate):
                return candidate
        return full
    raise InvalidModelURI(settings.name, full)
