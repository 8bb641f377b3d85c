"""Codec registries: content type name -> codec."""

_input_codecs = {}
_request_codecs = {}


class InputCodec:
    """Encodes one tensor (RequestInput / ResponseOutput) to and from a Python value."""
    ContentType = None
    TypeHint = None

    @classmethod
    def can_encode(cls, payload):
        return False


class RequestCodec:
    """Encodes a whole request or response to and from a Python value."""
    ContentType = None
    TypeHint = None

    @classmethod
    def can_encode(cls, payload):
        return False


def register_input_codec(codec):
    _input_codecs[codec.ContentType] = codec
    return codec


def register_request_codec(codec):
    _request_codecs[codec.ContentType] = codec
    return codec


def find_input_codec(content_type=None, payload=None, type_hint=None):
    if content_type is not None:
        return _input_codecs.get(content_type)
    for codec in _input_codecs.values():
        if payload is not None and codec.can_encode(payload):
            return codec
        if type_hint is not None and codec.TypeHint == type_hint:
            return codec
    return None


def find_request_codec(content_type=None, payload=None, type_hint=None):
    if content_type is not None:
        return _request_codecs.get(content_type)
    for codec in _request_codecs.values():
        if payload is not None and codec.can_encode(payload):
            return codec
        if type_hint is not None and codec.TypeHint == type_hint:
            return codec
    return None
