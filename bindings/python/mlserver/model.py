"""MLModel: the base class of MLServer custom models."""
from .codecs.base import find_input_codec, find_request_codec
from .types import InferenceResponse, MetadataModelResponse, ResponseOutput


class MLModel:
    def __init__(self, settings):
        self._settings = settings
        self.ready = False

    @property
    def settings(self):
        return self._settings

    @property
    def name(self):
        return self._settings.name

    @property
    def version(self):
        params = self._settings.parameters
        return params.version if params is not None else None

    @property
    def inputs(self):
        return self._settings.inputs

    @property
    def outputs(self):
        return self._settings.outputs

    async def load(self):
        self.ready = True
        return self.ready

    async def unload(self):
        return True

    async def predict(self, payload):
        raise NotImplementedError("predict() method not implemented")

    async def metadata(self):
        return MetadataModelResponse(name=self.name, platform=self._settings.platform,
                                     versions=self._settings.versions, inputs=self.inputs,
                                     outputs=self.outputs)

    # --- content types -------------------------------------------------------

    def _metadata_content_type(self, tensors, name):
        for t in tensors or []:
            if t.name == name and t.parameters is not None:
                return t.parameters.content_type
        return None

    def decode(self, request_input, default_codec=None):
        """An input by its content type: the input's own, the settings', or default_codec."""
        ct = request_input.parameters.content_type if request_input.parameters else None
        if ct is None:
            ct = self._metadata_content_type(self.inputs, request_input.name)
        codec = find_input_codec(content_type=ct) if ct is not None else default_codec
        if codec is None:
            return request_input.data
        return codec.decode_input(request_input)

    def decode_request(self, inference_request, default_codec=None):
        """The request by its content type: the request's own, the settings', or default_codec."""
        ct = inference_request.parameters.content_type if inference_request.parameters else None
        if ct is None and self._settings.parameters is not None:
            ct = self._settings.parameters.content_type
        codec = find_request_codec(content_type=ct) if ct is not None else default_codec
        if codec is None:
            return inference_request
        return codec.decode_request(inference_request)

    def encode_response(self, payload, default_codec=None):
        codec = find_request_codec(payload=payload) or default_codec
        if codec is None:
            raise TypeError(f"no codec encodes a {type(payload).__name__} response")
        return codec.encode_response(self.name, payload, self.version)

    def encode(self, payload, request_output, default_codec=None):
        ct = request_output.parameters.content_type if request_output.parameters else None
        if ct is None:
            ct = self._metadata_content_type(self.outputs, request_output.name)
        codec = find_input_codec(content_type=ct) if ct is not None else None
        if codec is None:
            codec = find_input_codec(payload=payload) or default_codec
        if codec is None:
            raise TypeError(f"no codec encodes output {request_output.name}")
        return codec.encode_output(request_output.name, payload)


__all__ = ["MLModel", "InferenceResponse", "ResponseOutput"]
