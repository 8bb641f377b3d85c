"""MLServer's exceptions. status_code decides the HTTP status of a failed request."""


class MLServerError(Exception):
    def __init__(self, msg, status_code=500):
        super().__init__(msg)
        self.status_code = status_code


class InferenceError(MLServerError):
    def __init__(self, msg, status_code=400):
        super().__init__(msg, status_code)


class InvalidModelURI(MLServerError):
    def __init__(self, name, uri=None):
        super().__init__(f"Invalid URI specified for model {name} ({uri})", 422)


class ModelParametersMissing(MLServerError):
    def __init__(self, name):
        super().__init__(f"Parameters missing for model {name}", 400)


class CodecError(MLServerError):
    def __init__(self, msg):
        super().__init__(msg, 400)
